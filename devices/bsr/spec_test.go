package bsr

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
	}{
		{"8", Spec{8, 8, 4096}},
		{"16", Spec{16, 16, 4096}},
		{"64", Spec{64, 64, 4096}},
		{"128", Spec{128, 128, 4096}},
		{"4096", Spec{4096, 4096, 4096}},
		{"8:16", Spec{8, 16, 4096}},
		{"8:8:8", Spec{8, 8, 8}},
		{"8:8:4096", Spec{8, 8, 4096}},
		{"128:128:128", Spec{128, 128, 128}},
		{"64::0x2000", Spec{64, 64, 8192}},
		{"16:0x40:8K", Spec{16, 64, 8192}},
		{"8:8:64k", Spec{8, 8, 65536}},
		{"8:8:1M", Spec{8, 8, 1 << 20}},
		{"4096:8192", Spec{4096, 8192, 8192}},
		{"8:4096", Spec{8, 4096, 4096}},
		{"8:", Spec{8, 8, 4096}},
		{"8::", Spec{8, 8, 4096}},
		{"0x80", Spec{128, 128, 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			// String round-trips.
			again, err := ParseSpec(got.String())
			require.NoError(t, err)
			assert.Equal(t, got, again)
		})
	}
}

func TestParseSpecErrors(t *testing.T) {
	tests := []struct {
		in, msg string
	}{
		{"", "BYTES is missing"},
		{":8", "BYTES is missing"},
		{"8:8:8:8", "too many fields"},
		{"x", "not a number"},
		{"-8", "not a number"},
		{"+8", "not a number"},
		{"8:+8", "not a number"},
		{"1_6", "not a number"},
		{"0x", "not a number"},
		{"K", "not a number"},
		{"99999999999999999999", "not a number"},
		{"17592186044416M", "too large"},
		{"0", "BYTES is 0"},
		{"8:0", "STRIDE is 0"},
		{"8:8:0", "LENGTH is 0"},
		{"7", "use 8, 16, 64, 128 or 4096"},
		{"32", "use 8, 16, 64, 128 or 4096"},
		{"256", "use 8, 16, 64, 128 or 4096"},
		{"8:4", "stride 4 is less than"},
		{"8:12", "not a power of two"},
		{"8:8:4", "length 4 is less than"},
		{"8:8:6000", "not a multiple of the page size"},
		{"8:8:2M", "more than the largest supported"},
		{"8:8192:4096", "larger than the register's 4096-byte window"},
		{"4096:4096:8", "length 8 is less than"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseSpec(tt.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.msg)
			assert.Contains(t, err.Error(), "bsr \""+tt.in+"\"", "the error names the flag value")
		})
	}
}

func TestDefaultSpecs(t *testing.T) {
	specs := DefaultSpecs()
	require.Len(t, specs, 4)
	for i, b := range []uint64{8, 16, 64, 128} {
		assert.Equal(t, Spec{Bytes: b, Stride: b, Length: PageSize}, specs[i])
		assert.NoError(t, specs[i].Validate())
	}
	// A fresh slice each time.
	specs[0].Bytes = 16
	assert.Equal(t, uint64(8), DefaultSpecs()[0].Bytes)
}

func TestWindowSize(t *testing.T) {
	assert.Equal(t, uint64(4096), Spec{8, 8, 8}.WindowSize())
	assert.Equal(t, uint64(4096), Spec{8, 8, 4096}.WindowSize())
	assert.Equal(t, uint64(65536), Spec{8, 8, 65536}.WindowSize())
}
