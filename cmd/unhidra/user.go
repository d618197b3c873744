package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/unhidra/unhidra/internal/auth"
)

// runUser is `unhidra user create|list|verify|disable|set-password`.
func runUser(ctx context.Context, e env) error {
	if len(e.args) == 0 {
		return fmt.Errorf("%w: user needs a subcommand: create, list, verify, disable, set-password", errUsage)
	}
	sub, args := e.args[0], e.args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	isAdmin := fs.Bool("admin", false, "give the user the admin role (create)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	want := map[string]int{"create": 1, "list": 0, "verify": 1, "disable": 1, "set-password": 1}
	n, ok := want[sub]
	if !ok {
		return fmt.Errorf("%w: unknown user subcommand %q", errUsage, sub)
	}
	if len(pos) != n {
		return fmt.Errorf("%w: user %s takes %d argument(s)", errUsage, sub, n)
	}
	a, err := openAdmin(ctx, e)
	if err != nil {
		return err
	}
	defer a.Close()
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
		if !*fromStdin {
			return fmt.Errorf("%w: set-password needs --password-stdin", errUsage)
		}
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
