package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/device"
)

// runDevice is `unhidra device register|list|revoke`.
func runDevice(ctx context.Context, e env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("%w: device needs a subcommand: register, list, revoke", errUsage)
	}
	sub, args := e.args[0], e.args[1:]
	fs := flag.NewFlagSet("device "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	owner := fs.String("owner", "", "the user who owns the device (register)")
	id := fs.String("id", "", "device id (register; default: generated)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"register": 1, "list": 0, "revoke": 1}
	n, ok := want[sub]
	if !ok {
		return fmt.Errorf("%w: unknown device subcommand %q", errUsage, sub)
	}
	if len(pos) != n {
		return fmt.Errorf("%w: device %s takes %d argument(s)", errUsage, sub, n)
	}
	if sub == "register" && *owner == "" {
		return fmt.Errorf("%w: device register needs --owner USER", errUsage)
	}
	a, err := openAdmin(ctx, e)
	if err != nil {
		return err
	}
	defer a.Close()
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
