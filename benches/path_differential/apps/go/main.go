// Go net/http ServeMux app for the path differential. Patterns without a method
// ("/signup") mean the same on Go 1.19 (Debian bookworm) and on 1.22+ muxes, and accept
// every method, like the other apps. usage: geogate-bench-mux PORT
package main

import (
	"encoding/json"
	"net/http"
	"os"
)

func echo(route string, status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := r.Header
		body := map[string]any{
			"app":   "go",
			"route": route,
			"path":  r.URL.Path, // decoded; what the mux matched
			// Go moves Host out of the header map into r.Host (absolute-form authority first).
			"host_header":      r.Host,
			"fw_host":          r.Host,
			"x_forwarded_for":  nullable(h.Values("X-Forwarded-For")),
			"forwarded":        nullable(h.Values("Forwarded")),
			"x_real_ip":        nullable(h.Values("X-Real-IP")),
			"x_geo_client_ip":  nullable(h.Values("X-Geo-Client-IP")),
			"x_forwarded_host": nullable(h.Values("X-Forwarded-Host")),
			"fw_remote_ip":     r.RemoteAddr,
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Bench-App", "go")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
}

// nullable joins repeated header lines as a proxy would see them, nil when absent.
func nullable(v []string) any {
	if len(v) == 0 {
		return nil
	}
	out := v[0]
	for _, s := range v[1:] {
		out += ", " + s
	}
	return out
}

func main() {
	mux := http.NewServeMux()
	// The protected actions and everything below them (geogate's rule is a segment prefix):
	// a pattern ending in "/" is a subtree on every Go version.
	mux.HandleFunc("/signup", echo("signup", 200))
	mux.HandleFunc("/signup/", echo("signup", 200))
	mux.HandleFunc("/api/v1/accounts", echo("accounts", 200))
	mux.HandleFunc("/api/v1/accounts/", echo("accounts", 200))
	mux.HandleFunc("/", echo("other", 404))
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], mux); err != nil {
		panic(err)
	}
}
