package tests

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pcp-dev/pcp/internal/netns"
	"github.com/pcp-dev/pcp/lib/doctor"
)

// pcp doctor on the simulated internet: a machine with a public address
// is reached directly, one behind a cone NAT by hole punching, one behind a
// symmetric NAT only through a relay; each sees the three bootstrap peers,
// the two that relay, and what each observes.
func TestDoctorVerdicts(t *testing.T) {
	n := newInternet(t, relayless, nil, []string{"--no-relay"})
	public := netns.New(t, "public")
	netns.Link(t, n.ns, "pub", "11.0.20.1/24", public, "eth0", "11.0.20.2/24")
	public.Run(t, "ip", "route", "add", "default", "via", "11.0.20.1")
	for _, tc := range []struct {
		where      *netns.Namespace
		nat, reach string
	}{
		{public, doctor.NATNone, doctor.ReachDirect},
		{n.home(1, false), doctor.NATCone, doctor.ReachPunched},
		{n.home(2, true), doctor.NATSymmetric, doctor.ReachRelay},
	} {
		p := start(t, tc.where.Command(binary(t, "pcp"), "doctor", "--json", "--bootstrap", n.bootstrap), nil)
		p.expectExit(30*time.Second, 0)
		var r doctor.Report
		if err := json.Unmarshal(p.stdout.Bytes(), &r); err != nil {
			t.Fatalf("pcp doctor --json printed %q: %v", p.stdout.String(), err)
		}
		reached := 0
		for _, b := range r.Bootstrap {
			if b.Reached && b.Observed != "" {
				reached++
			}
		}
		if r.NAT != tc.nat || r.Reach != tc.reach || reached != 3 || len(r.Relays) != 2 || r.Verdict == "" {
			t.Errorf("want NAT %s, reach %s, 3 peers that observed, 2 relays; got %s", tc.nat, tc.reach, p.stdout.String())
		}
		if tc.reach == doctor.ReachRelay && !strings.Contains(r.Verdict, "--allow-relay") {
			t.Errorf("the relay verdict does not say what to do: %q", r.Verdict)
		}
	}
	// The lines for a person say the same.
	p := start(t, public.Command(binary(t, "pcp"), "doctor", "--bootstrap", n.bootstrap), nil)
	p.expectExit(30*time.Second, 0)
	if out := p.stdout.String(); !strings.Contains(out, "verdict: peers elsewhere can reach you directly") || strings.Count(out, "bootstrap …") != 3 {
		t.Errorf("pcp doctor printed:\n%s", out)
	}
}
