package inmem_test

import (
	"testing"

	"github.com/unhidra/unhidra/internal/broker"
	"github.com/unhidra/unhidra/internal/brokertest"
	"github.com/unhidra/unhidra/internal/inmem"
)

func TestBrokerConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) (broker.Broker, broker.Broker) {
		b := inmem.NewBroker()
		return b, b
	})
}
