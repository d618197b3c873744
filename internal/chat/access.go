package chat

import (
	"context"

	"github.com/unhidra/unhidra"
)

// CheckRead returns nil when who may read channel (subscribe, history),
// else the forbidden error every read route gives. Other domains whose
// rights follow a channel's (shared files) ask here, so the rule stays in
// one place.
func (s *Service) CheckRead(ctx context.Context, who unhidra.Identity, channel string) error {
	_, err := s.accessTo(ctx, who, channel)
	return err
}

// CheckPost returns nil when who may post in channel now, with the same
// refusals as a post: not a member, a blocked or departed direct peer.
func (s *Service) CheckPost(ctx context.Context, who unhidra.Identity, channel string) error {
	a, err := s.accessTo(ctx, who, channel)
	if err != nil {
		return err
	}
	if !a.post {
		if a.ch.Kind == KindPublic {
			return unhidra.Errorf(unhidra.EFORBIDDEN, "join the channel before posting")
		}
		return errNoAccess
	}
	return s.checkDirectPost(ctx, who, a.ch)
}
