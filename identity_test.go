package unhidra_test

import (
	"testing"

	"github.com/unhidra/unhidra"
	"github.com/unhidra/unhidra/wire"
)

func TestOnlyTheCommandLineIsTheOperator(t *testing.T) {
	if !unhidra.IsOperator(unhidra.Operator) {
		t.Fatal("Operator is not the operator")
	}
	for name, who := range map[string]unhidra.Identity{
		"an admin user":                 {Principal: wire.Principal{Kind: wire.KindUser, ID: "cli"}, Roles: []string{unhidra.RoleAdmin}},
		"the operator with a session":   {Principal: unhidra.Operator.Principal, SessionID: "s", Roles: []string{unhidra.RoleAdmin}},
		"the operator without a role":   {Principal: unhidra.Operator.Principal},
		"the operator with extra roles": {Principal: unhidra.Operator.Principal, Roles: []string{unhidra.RoleAdmin, "x"}},
	} {
		if unhidra.IsOperator(who) {
			t.Errorf("%s is taken for the operator", name)
		}
	}
}
