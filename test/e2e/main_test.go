package e2e

import (
	"testing"

	"github.com/provisiond/provisiond/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
