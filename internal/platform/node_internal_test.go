package platform

import "testing"

func TestStartupBrowsableURLForEveryAddress(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:9000": "localhost:9000", "[::]:9000": "localhost:9000", "127.0.0.1:9000": "127.0.0.1:9000", "[::1]:9000": "[::1]:9000"} {
		if got := browsable(in); got != want {
			t.Errorf("browsable(%s) = %s, want %s", in, got, want)
		}
	}
}
