// loadgen: the HTTP load generator of bench/intake_load.py.
//
// It POSTs one JSON body per request (read from -bodies, one per line, each used once) with a
// bearer token and an Idempotency-Key, either closed loop (-clients N, each sends its next request
// when the last is answered) or open loop (-rate R a second, each request due at its own moment
// and sent then whatever came before: latency counts from when it was due, so a slow answer cannot
// hide the requests queued behind it). It prints one JSON summary on stdout and, with -accepted,
// writes the case_id of every 201 answer, one per line. With -paths each line of -bodies is
// "PATH<TAB>JSON" and is POSTed to -url + PATH (a command on one case each: bench/hop_latency.py).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type result struct {
	status  int
	latency time.Duration
	failure string // "" | reset | refused | timeout | other
	caseID  string
	retry   string // the Retry-After header of a 503
}

func main() {
	url := flag.String("url", "", "the endpoint")
	token := flag.String("token", "", "bearer token")
	bodiesPath := flag.String("bodies", "", "file of JSON bodies, one per line")
	mode := flag.String("mode", "closed", "closed | open")
	clients := flag.Int("clients", 50, "closed loop: concurrent clients")
	rate := flag.Float64("rate", 1000, "open loop: requests a second")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	timeout := flag.Duration("timeout", 30*time.Second, "a request's timeout")
	keyPrefix := flag.String("key-prefix", "load", "Idempotency-Key prefix")
	accepted := flag.String("accepted", "", "write accepted case ids here")
	paths := flag.Bool("paths", false, "each line of -bodies is PATH<TAB>JSON, POSTed to -url + PATH")
	flag.Parse()

	bodies := readBodies(*bodiesPath)
	transport := &http.Transport{
		MaxIdleConns: 20000, MaxIdleConnsPerHost: 20000, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true,
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}
	var next int64 = -1
	take := func() (int, bool) {
		i := int(atomic.AddInt64(&next, 1))
		return i, i < len(bodies)
	}
	send := func(i int, due time.Time) result {
		target, payload := *url, bodies[i]
		if *paths {
			if tab := bytes.IndexByte(payload, '\t'); tab >= 0 {
				target, payload = *url+string(payload[:tab]), payload[tab+1:]
			}
		}
		req, _ := http.NewRequest("POST", target, bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+*token)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("%s-%d", *keyPrefix, i))
		resp, err := client.Do(req)
		if err != nil {
			return result{latency: time.Since(due), failure: classify(err)}
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := result{status: resp.StatusCode, latency: time.Since(due), retry: resp.Header.Get("Retry-After")}
		if resp.StatusCode == 201 {
			var answer struct {
				CaseID string `json:"case_id"`
			}
			if json.Unmarshal(body, &answer) == nil {
				r.caseID = answer.CaseID
			}
		}
		return r
	}

	var mu sync.Mutex
	var results []result
	keep := func(r result) { mu.Lock(); results = append(results, r); mu.Unlock() }
	started := time.Now()
	end := started.Add(*duration)
	var wg sync.WaitGroup
	if *mode == "closed" {
		for c := 0; c < *clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					i, ok := take()
					if !ok {
						return
					}
					keep(send(i, time.Now()))
				}
			}()
		}
	} else {
		interval := time.Duration(float64(time.Second) / *rate)
		for n := 0; ; n++ {
			due := started.Add(time.Duration(n) * interval)
			if !due.Before(end) {
				break
			}
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			i, ok := take()
			if !ok {
				break
			}
			wg.Add(1)
			go func(i int, due time.Time) { defer wg.Done(); keep(send(i, due)) }(i, due)
		}
	}
	sendingEnded := time.Since(started)
	wg.Wait()
	elapsed := time.Since(started)
	summarize(results, sendingEnded, elapsed, *accepted)
}

func readBodies(path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	var out [][]byte
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 1<<24)
	for scanner.Scan() {
		line := append([]byte(nil), scanner.Bytes()...)
		if len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

func classify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timeout"
	}
	if strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "EOF") {
		return "reset"
	}
	return "other"
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i].Microseconds()) / 1000
}

func summarize(results []result, sending, elapsed time.Duration, acceptedPath string) {
	statuses := map[string]int{}
	failures := map[string]int{}
	retryAfter := 0
	var all, ok, shed []time.Duration
	var ids []string
	for _, r := range results {
		all = append(all, r.latency)
		if r.failure != "" {
			failures[r.failure]++
			continue
		}
		statuses[fmt.Sprint(r.status)]++
		if r.status == 201 {
			ok = append(ok, r.latency)
			ids = append(ids, r.caseID)
		}
		if r.status == 503 {
			shed = append(shed, r.latency)
			if r.retry != "" {
				retryAfter++
			}
		}
	}
	for _, s := range [][]time.Duration{all, ok, shed} {
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	}
	if acceptedPath != "" {
		_ = os.WriteFile(acceptedPath, []byte(strings.Join(ids, "\n")+"\n"), 0o600)
	}
	out := map[string]any{
		"requests": len(results), "statuses": statuses, "failures": failures,
		"sending_s": sending.Seconds(), "elapsed_s": elapsed.Seconds(),
		"accepted": len(ok), "accepted_per_s": float64(len(ok)) / sending.Seconds(),
		"p50_ms": percentile(all, 0.50), "p90_ms": percentile(all, 0.90), "p99_ms": percentile(all, 0.99),
		"max_ms": percentile(all, 1.0),
		"accepted_p99_ms": percentile(ok, 0.99), "shed_p99_ms": percentile(shed, 0.99),
		"shed_with_retry_after": retryAfter,
	}
	enc := json.NewEncoder(os.Stdout)
	_ = enc.Encode(out)
}
