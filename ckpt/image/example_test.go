package image_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/emuckpt/emuckpt/ckpt/image"
)

// A record type chosen by the caller.
const recVMA = 0x10

func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.ckpt")

	// Checkpoint: two pages of "guest RAM" and a record that says where
	// they belong.
	ram := make([]byte, 2*image.PageSize)
	copy(ram, "hello")
	w, err := image.Create(path)
	if err != nil {
		panic(err)
	}
	defer w.Abort()
	first, _ := w.Pages(ram)
	var e image.Encoder
	e.U64(0x400000) // guest address
	e.U64(first)    // first page
	e.U64(2)        // number of pages
	e.String("[heap]")
	payload, _ := e.Finish()
	w.Record(recVMA, payload)
	if err := w.Commit(); err != nil {
		panic(err)
	}

	// Restore.
	img, err := image.Open(path)
	if err != nil {
		panic(err)
	}
	defer img.Close()
	for _, r := range img.Records() {
		d := r.Decoder()
		addr, first, n, name := d.U64(), d.U64(), d.U64(), d.String(256)
		if err := d.Finish(); err != nil {
			panic(err)
		}
		pages, err := img.PageRange(first, n)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s at %#x: %d pages starting %q\n", name, addr, n, pages[:5])
	}

	// A damaged image is refused.
	data, _ := os.ReadFile(path)
	data[image.PageSize+1] ^= 1
	_, err = image.Parse(data)
	fmt.Println(errors.Is(err, image.ErrCorrupt))
	// Output:
	// [heap] at 0x400000: 2 pages starting "hello"
	// true
}
