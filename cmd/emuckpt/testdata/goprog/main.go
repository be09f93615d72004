// goprog is an ordinary Go program that the tests build with
// CGO_ENABLED=0 and run under emuckpt: goroutines on several threads,
// channels, sync, timers (the runtime's netpoller: epoll and an eventfd),
// a signal it sends itself (os/signal), a pipe read in a goroutine (a
// non-blocking descriptor in the netpoller), with the argument "stdin" a
// line of standard input, and an exit status. With "spin", only a
// goroutine that spins without calls and must be preempted. Its
// output does not depend on scheduling.
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// spins counts the loops of a goroutine that never calls a function.
var spins int

func main() {
	if len(os.Args) > 1 && os.Args[1] == "spin" {
		// A goroutine that spins without a call can only be stopped by
		// the runtime's asynchronous preemption (tgkill of SIGURG): the
		// sleeping main goroutine needs its thread back.
		go func() {
			for {
				spins++
			}
		}()
		time.Sleep(20 * time.Millisecond)
		fmt.Println("preempted a spinning goroutine")
		os.Exit(4)
	}

	// Workers squaring numbers, results summed under a mutex.
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sum int
	)
	jobs := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				mu.Lock()
				sum += n * n
				mu.Unlock()
				runtime.Gosched()
			}
		}()
	}
	for n := 1; n <= 100; n++ {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	fmt.Println("sum of squares:", sum)

	// Sleeps and timers.
	start := time.Now()
	time.Sleep(20 * time.Millisecond)
	fmt.Println("slept at least 20ms:", time.Since(start) >= 20*time.Millisecond)
	select {
	case <-time.After(10 * time.Millisecond):
		fmt.Println("timer fired")
	case <-make(chan int):
	}
	ticker := time.NewTicker(5 * time.Millisecond)
	for i := 0; i < 3; i++ {
		<-ticker.C
	}
	ticker.Stop()
	fmt.Println("ticker ticked 3 times")

	// A signal to itself.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		fmt.Println("kill:", err)
	}
	fmt.Println("got signal:", <-sigs)

	// A pipe read by a goroutine that waits in the netpoller.
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Println("pipe:", err)
		os.Exit(1)
	}
	got := make(chan string)
	go func() {
		buf := make([]byte, 64)
		var all []byte
		for {
			n, err := r.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- string(all)
	}()
	for _, s := range []string{"hello ", "from ", "a pipe"} {
		time.Sleep(2 * time.Millisecond)
		w.Write([]byte(s))
	}
	w.Close()
	fmt.Printf("pipe read: %q\n", <-got)

	// A read with a deadline on a pipe nobody writes to.
	r2, w2, _ := os.Pipe()
	r2.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err = r2.Read(make([]byte, 1))
	fmt.Println("read deadline:", os.IsTimeout(err))
	w2.Close()

	// With the argument "stdin": a line from standard input, read by a
	// thread that blocks in read(2) meanwhile.
	if len(os.Args) > 1 && os.Args[1] == "stdin" {
		fmt.Println("reading stdin")
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		fmt.Printf("stdin: %q %v\n", line, err)
	}

	os.Exit(3)
}
