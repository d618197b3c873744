package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/unhidra/unhidra/internal/audit"
	"github.com/unhidra/unhidra/internal/auth"
	"github.com/unhidra/unhidra/internal/httpx"
)

// adminEnv is what the administration commands say about where they work.
const adminEnv = `Environment: the commands open the server's database like "unhidra serve" does:
  UNHIDRA_DATA_DIR   data directory (default ./data), holding unhidra.db
  DATABASE_URL       sqlite://path or a bare path (default: unhidra.db in the data dir)
  JWT_SECRET         the server's secret (default: the one generated in the data dir)
They are safe to run beside a live server; its sessions end within seconds
of a disable or password change.`

var userCmd = &cmdSpec{
	name:    "user",
	args:    "COMMAND [flags] [NAME]",
	summary: "Administers the accounts in the server's database.",
	commands: [][2]string{
		{"create NAME", "create a user (--admin, --password-stdin; else a password is generated and printed)"},
		{"list", "list the users with their roles and state"},
		{"verify NAME", "verify a user registered while REGISTRATION=approval"},
		{"disable NAME", "disable a user and end its sessions"},
		{"set-password NAME", "set a password read from standard input and end the user's sessions"},
	},
	more:     adminEnv,
	examples: []string{"unhidra user create carol", "unhidra user list", "unhidra user create -h"},
}

var userCmds = map[string]*cmdSpec{
	"create": {
		name:    "user create",
		args:    "NAME [--admin] [--password-stdin]",
		pos:     []string{"NAME"},
		summary: "Creates a user. Without --password-stdin a strong password is generated and printed once.",
		more:    adminEnv,
		examples: []string{
			"unhidra user create carol",
			"unhidra user create bob --admin --password-stdin <<< 'a long password'",
		},
	},
	"list": {
		name:     "user list",
		summary:  "Lists every user: username, roles, verified, disabled, created.",
		more:     adminEnv,
		examples: []string{"unhidra user list"},
	},
	"verify": {
		name:     "user verify",
		args:     "NAME",
		pos:      []string{"NAME"},
		summary:  "Verifies a user, so that it may log in when REGISTRATION=approval.",
		more:     adminEnv,
		examples: []string{"unhidra user verify carol"},
	},
	"disable": {
		name:     "user disable",
		args:     "NAME",
		pos:      []string{"NAME"},
		summary:  "Disables a user: its logins are refused and its sessions and live connections end.",
		more:     adminEnv,
		examples: []string{"unhidra user disable carol"},
	},
	"set-password": {
		name:     "user set-password",
		args:     "NAME --password-stdin",
		pos:      []string{"NAME"},
		summary:  "Sets a user's password from the first line of standard input and ends its sessions.",
		more:     adminEnv,
		examples: []string{"unhidra user set-password carol --password-stdin <<< 'another long password'"},
	},
}

// runUser is `unhidra user create|list|verify|disable|set-password`.
func runUser(ctx context.Context, e env) error {
	sub, args, err := userCmd.group(e)
	if err != nil {
		return err
	}
	spec := userCmds[sub]
	fs := spec.flags()
	var isAdmin, fromStdin *bool
	switch sub {
	case "create":
		isAdmin = fs.Bool("admin", false, "give the user the admin role")
		fromStdin = fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	case "set-password":
		fromStdin = fs.Bool("password-stdin", false, "read the password from the first line of standard input (required)")
	}
	pos, err := spec.parse(e, fs, args)
	if err != nil {
		return err
	}
	if sub == "set-password" && !*fromStdin {
		return spec.errorf("needs --password-stdin (the password is never an argument)")
	}
	a, err := openAdmin(ctx, e)
	if err != nil {
		return err
	}
	defer a.Close()
	ctx = cliContext(ctx)
	switch sub {
	case "create":
		pw, generated := "", false
		if *fromStdin {
			if pw, err = readPasswordLine(e.stdin); err != nil {
				return err
			}
		} else {
			pw, generated = auth.GeneratePassword(), true
		}
		u, err := a.auth.CreateUser(ctx, auth.CreateUserInput{Username: pos[0], Password: pw, Admin: *isAdmin})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created user %s\n", u.Username)
		if generated {
			fmt.Fprintf(e.stdout, "password: %s\n", pw)
		}
	case "list":
		us, err := a.auth.Users(ctx, auth.Operator)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tROLES\tVERIFIED\tDISABLED\tCREATED")
		for _, u := range us {
			roles := "-"
			if len(u.Roles) > 0 {
				roles = fmt.Sprint(u.Roles)
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\n", u.Username, roles, u.Verified, u.Disabled, u.CreatedAt.Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	case "verify":
		u, err := a.auth.VerifyUser(ctx, auth.Operator, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "verified user %s\n", u.Username)
	case "disable":
		u, err := a.auth.DisableUser(ctx, auth.Operator, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "disabled user %s and ended its sessions\n", u.Username)
	case "set-password":
		pw, err := readPasswordLine(e.stdin)
		if err != nil {
			return err
		}
		if err := a.auth.SetPassword(ctx, auth.Operator, pos[0], pw); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "password of %s changed; its sessions were ended\n", pos[0])
	}
	return nil
}

// cliContext is the context of one administration command: its audit
// events name the command line as their transport and carry one request id
// of their own; their actor is the operator (auth.Operator, "operator:cli").
func cliContext(ctx context.Context) context.Context {
	return audit.WithSource(ctx, audit.Source{Transport: audit.TransportCLI, RequestID: "cli-" + httpx.NewRequestID()})
}
