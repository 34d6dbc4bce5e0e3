// Package docs holds the documentation to the binary: every command block of
// README.md and docs/*.md runs against the real provisiond, every sample
// output shown after one must match what it printed, and every relative link
// and anchor of the repository's Markdown must resolve, so that the docs
// cannot drift from the code unnoticed.
//
// How a document runs (TestDocs): each file gets a sandbox under a temporary
// directory: a copy of examples/ in a checkout directory with bin/provisiond,
// and the binary first in PATH as provisiond. The fenced ```sh, ```bash and
// ```console blocks run in document order, each with `bash -e -o pipefail`,
// carrying the working directory and exported variables from one block to
// the next like a reader's shell. Before a block runs:
//
//   - /srv/provisiond, /var/lib/provisiond and /etc/provisiond become
//     directories of the sandbox, and localhost:8080 and 127.0.0.1:8080 the
//     test daemon's loopback port (PROVISIOND_SERVER points the CLI there);
//   - `sudo` is a shim that runs its command as the test's user;
//   - ~/.curlrc says --fail-with-body, so an HTTP error fails the block.
//
// A block that would still touch the host (useradd, systemctl, setcap, an
// absolute path outside the sandbox...) fails the test: it must be marked.
//
// A plain ``` block right after a command block is its sample output. Each of
// its lines must appear in the output, compared token by token after volatile
// values (times, durations, addresses, UUIDs, tokens, hashes, the version)
// are replaced by placeholders, so a renamed field, a changed value or a
// changed table header fails; "..." stands for any tokens, a line may show a
// contiguous part of the real one, and a trailing "   # comment" is the
// doc's annotation.
//
// Blocks that cannot run here are marked, in the Markdown, with an HTML
// comment right before the block, each with its reason in parentheses:
//
//	<!-- doc-test: skip (needs a real VLAN) -->
//	    the block is not run, and its sample not checked.
//	<!-- doc-test: daemon (reason) -->
//	    the block starts the daemon later blocks talk to: `make run` (its
//	    serve command from the Makefile) or a `provisiond serve` command. The
//	    test runs it in the background on a free loopback port, with
//	    --trust-loopback (the test stands in for machines from loopback) and
//	    without --dhcp-interface (proxyDHCP needs root and a real interface).
//	    A sample after the block is checked against the daemon's log.
//	<!-- doc-test: write FILE (reason) -->
//	    the block (a YAML file, say) is written to FILE: the edit the text
//	    asks the reader to make.
//	<!-- doc-test: log (reason) -->
//	    the block is a sample of the daemon's log so far.
//	<!-- doc-test: run (reason)
//	script
//	-->
//	    a hidden step: the script runs like a block. It stands in for what a
//	    machine does (its iPXE request, the installer's phone-home), so that
//	    later samples show a booted machine.
//
// daemon and log take `; unchecked: TEXT` options before the reason: sample
// lines containing TEXT are not checked (the DHCP lines of a daemon run
// without --dhcp-interface).
//
// TestDocFlags checks the docs against the binary's -h output, skipped blocks
// included: every flag given to a provisiond command and every PROVISIOND_*
// variable exists, every serve flag is in the README's command line synopsis,
// and ```dotenv blocks (EnvironmentFile= contents) carry no inline comment,
// which systemd would keep in the value. TestDocLinks checks every relative
// link and #anchor of the repository's Markdown files (GitHub's heading
// slugs), and that none leaves the repository.
//
//	go test -race -run 'TestDoc' ./test/docs
package docs
