// Package storetest holds the conformance suites of the store contracts
// the domain packages declare: chat.Store (Run), auth.Store (Auth),
// device.Store (Device), the fleet side of device.FleetStore (Fleet, online
// state and commands; Telemetry, telemetry points; TelemetryWithMessages,
// the point a chat.Append carries, stored in its message's transaction)
// and presence.Store (Presence). Every implementation (SQLite now,
// PostgreSQL later) runs the same tests. Each subtest gets a fresh, empty, migrated store from the
// suite's open function; the suites use only the interfaces. Subtests do
// not run in parallel with each other (a few start goroutines of their own
// where the contract promises safety under concurrent calls).
package storetest
