package chat

import "github.com/unhidra/unhidra/wire"

// Recovery is the answer to a subscribe: the channel's current last offset
// and, when the subscriber gave `since` and every message after it is still
// in history, those messages in offset order (Recovered true). When history
// no longer reaches back to since+1, Recovered is false and Messages is empty:
// never a partial batch.
type Recovery struct {
	Offset    int64
	Recovered bool
	Messages  []wire.Message
}
