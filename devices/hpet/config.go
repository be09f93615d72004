package hpet

import (
	"fmt"
	"strconv"
	"strings"
)

// Config is the shape of the modelled HPET: the command line's
// `--hpet timers=N,period=FS`.
type Config struct {
	// Timers is the number of comparators, 1..32 (0 means DefaultTimers,
	// 3). Timers 0 and 1 are periodic-capable, the others one-shot only.
	Timers int
	// PeriodFS is COUNTER_CLK_PERIOD, the length of one counter tick in
	// femtoseconds, 1..0x05F5E100 (0 means DefaultPeriodFS, 69841279:
	// 14.31818 MHz).
	PeriodFS uint32
}

// DefaultConfig is the HPET emuckpt models when --hpet gives nothing:
// three timers at 14.31818 MHz.
func DefaultConfig() Config { return Config{Timers: DefaultTimers, PeriodFS: DefaultPeriodFS} }

// withDefaults fills in the zero fields.
func (c Config) withDefaults() Config {
	if c.Timers == 0 {
		c.Timers = DefaultTimers
	}
	if c.PeriodFS == 0 {
		c.PeriodFS = DefaultPeriodFS
	}
	return c
}

// Validate reports whether c (with zero fields defaulted) is an HPET the
// spec allows.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Timers < 1 || c.Timers > MaxTimers {
		return fmt.Errorf("hpet: timers=%d: an HPET block has 1 to %d timers", c.Timers, MaxTimers)
	}
	if c.PeriodFS > MaxPeriodFS {
		return fmt.Errorf("hpet: period=%d: the tick period must be 1 to %d femtoseconds (at least 10 MHz); the default is %d (14.31818 MHz)",
			c.PeriodFS, MaxPeriodFS, DefaultPeriodFS)
	}
	return nil
}

// String is c in ParseConfig's syntax.
func (c Config) String() string {
	c = c.withDefaults()
	return fmt.Sprintf("timers=%d,period=%d", c.Timers, c.PeriodFS)
}

// ParseConfig parses the value of `--hpet`: comma-separated KEY=VALUE
// pairs with the keys timers (1..32) and period (femtoseconds per tick,
// 1..100000000), each at most once; a key left out keeps its default, and
// the empty string is the default configuration. Numbers are decimal, or
// hexadecimal with 0x.
func ParseConfig(s string) (Config, error) {
	var c Config
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, val, ok := strings.Cut(item, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || key == "" || val == "" {
			return Config{}, fmt.Errorf("hpet: %q: want KEY=VALUE, as in --hpet timers=3,period=69841279", item)
		}
		if seen[key] {
			return Config{}, fmt.Errorf("hpet: %s given twice in %q", key, s)
		}
		seen[key] = true
		switch key {
		case "timers":
			n, err := strconv.ParseUint(val, 0, 8)
			if err != nil || n < 1 || n > MaxTimers {
				return Config{}, fmt.Errorf("hpet: timers=%s: want a number of timers from 1 to %d", val, MaxTimers)
			}
			c.Timers = int(n)
		case "period":
			n, err := strconv.ParseUint(val, 0, 32)
			if err != nil || n < 1 || n > MaxPeriodFS {
				return Config{}, fmt.Errorf("hpet: period=%s: want the tick period in femtoseconds, 1 to %d (the default %d is 14.31818 MHz)",
					val, MaxPeriodFS, DefaultPeriodFS)
			}
			c.PeriodFS = uint32(n)
		default:
			return Config{}, fmt.Errorf("hpet: unknown key %q in %q: the keys are timers and period", key, s)
		}
	}
	return c.withDefaults(), nil
}
