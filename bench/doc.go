// Command bench measures oidcgate beside a bare httputil.ReverseProxy and
// oauth2-proxy on one machine, in one run: throughput, latency and CPU per
// request through each, and through a real nginx whose auth_request asks
// oidcgate's or oauth2-proxy's /oauth2/auth; how fast a revocation bites; and memory and reload
// time with many revocation entries. It writes RESULTS.md and results.png
// to -out. bench/run.sh installs what it needs and runs it in full;
// -quick is a smoke run; README.md, "Benchmark", explains the numbers.
//
// It owns its own issuer, upstream app and load scripts, and drives the
// built oidcgate binary from outside, as a user would. It must never
// change or reach into the product (no debug endpoints, no test hooks in
// other packages), and never report a measurement whose correctness checks
// failed: such a round or part is printed as FAILED.
package main
