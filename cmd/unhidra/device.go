package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
)

var deviceCmd = &cmdSpec{
	name:    "device",
	args:    "COMMAND [flags] [NAME|ID]",
	summary: "Administers the devices in the server's database: registration and its API key, listing, revocation.",
	commands: [][2]string{
		{"register NAME --owner USER", "register a device and print its API key (shown only this once)"},
		{"list", "list every device with its owner and state"},
		{"revoke ID", "revoke a device: its key stops working and its live sessions close"},
	},
	more: adminEnv,
	examples: []string{
		"unhidra device register greenhouse --owner bob --id gh-1",
		"unhidra device list",
		"unhidra device register -h",
	},
}

var deviceCmds = map[string]*cmdSpec{
	"register": {
		name:    "device register",
		args:    "NAME --owner USER [--id ID]",
		pos:     []string{"NAME"},
		summary: "Registers a device owned by USER and prints its id and API key; the key is shown only this once.",
		more:    adminEnv,
		examples: []string{
			"unhidra device register greenhouse --owner bob --id gh-1",
			"unhidra device register 'hall sensor' --owner bob",
		},
	},
	"list": {
		name:     "device list",
		summary:  "Lists every device: id, name, owner, online, revoked, created.",
		more:     adminEnv,
		examples: []string{"unhidra device list"},
	},
	"revoke": {
		name:     "device revoke",
		args:     "ID",
		pos:      []string{"ID"},
		summary:  "Revokes a device: its key stops working at once and its live WebSocket and MQTT sessions close.",
		more:     adminEnv,
		examples: []string{"unhidra device revoke gh-1"},
	},
}

// runDevice is `unhidra device register|list|revoke`.
func runDevice(ctx context.Context, e env) error {
	sub, args, err := deviceCmd.group(e)
	if err != nil {
		return err
	}
	spec := deviceCmds[sub]
	fs := spec.flags()
	var owner, id *string
	if sub == "register" {
		owner = fs.String("owner", "", "the user who owns the device (required)")
		id = fs.String("id", "", fmt.Sprintf("device id: 1 to %d of A-Z a-z 0-9 . _ -, compared without letter case (default: generated)", device.MaxIDLen))
	}
	pos, err := spec.parse(e, fs, args)
	if err != nil {
		return err
	}
	if sub == "register" && *owner == "" {
		return spec.errorf("needs --owner USER")
	}
	a, err := openAdmin(ctx, e)
	if err != nil {
		return err
	}
	defer a.Close()
	ctx = cliContext(ctx)
	switch sub {
	case "register":
		d, key, err := a.devices.Register(ctx, auth.Operator, device.RegisterInput{Name: pos[0], ID: *id, Owner: *owner})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "registered device %s (%s) for %s\ndevice_id: %s\napi_key: %s\nThe key is shown only this once.\n", d.Name, d.ID, d.Owner, d.ID, key)
	case "list":
		ds, err := a.devices.List(ctx, auth.Operator)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE_ID\tNAME\tOWNER\tONLINE\tREVOKED\tCREATED")
		for _, d := range ds {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%v\t%s\n", d.ID, d.Name, d.Owner, d.Online, d.Revoked, d.CreatedAt.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	case "revoke":
		if err := a.devices.Revoke(ctx, auth.Operator, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "revoked device %s; its key no longer works\n", pos[0])
	}
	return nil
}
