//! The nat-table rules as `iptables-restore` input, built from the options alone, and the input
//! that removes them again, built from `iptables-save` output.
//!
//! Inbound (`PREROUTING`, TCP arriving from outside the pod) goes to the inbound port, except
//! the proxy's own ports and `--skip-inbound-ports`. Outbound (`OUTPUT`, TCP the pod starts)
//! goes to the outbound port, except the proxy's own traffic (by UID, and GID if given), traffic
//! to loopback addresses, `--skip-outbound-ports` and `--skip-outbound-cidrs`. An app calling its
//! own pod IP leaves on `lo` and never passes `PREROUTING`, so `OUTPUT` sends non-loopback `lo`
//! traffic through the inbound chain (istio's `-o lo` pattern): it is served as inbound, with the
//! same exceptions, and never as outbound. The proxy's own traffic, even to its pod IP, is never
//! redirected, which is what keeps it out of loops.

use std::fmt::Write;

use super::{Cidr, Family, InitOptions};

/// Reached from `PREROUTING`: decides which inbound TCP to redirect.
const INBOUND: &str = "PILLION_INBOUND";
/// Redirects to the inbound port.
const IN_REDIRECT: &str = "PILLION_IN_REDIRECT";
/// Reached from `OUTPUT`: decides which outbound TCP to redirect.
const OUTPUT: &str = "PILLION_OUTPUT";
/// Redirects to the outbound port.
const REDIRECT: &str = "PILLION_REDIRECT";

/// Every chain `pillion init` creates.
pub const CHAINS: [&str; 4] = [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT];

/// The built-in chains we add a jump to, and the chain each jumps to.
const JUMPS: [(&str, &str); 2] = [("PREROUTING", INBOUND), ("OUTPUT", OUTPUT)];

/// The `iptables-restore --noflush` input that installs the rules for one family, assuming none
/// of our chains exist yet.
pub fn rules(opts: &InitOptions, family: Family) -> String {
    let mut out = String::from("*nat\n");
    for chain in CHAINS {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let mut rule = |chain: &str, spec: &str| {
        let _ = writeln!(out, "-A {chain} {spec}");
    };

    rule(IN_REDIRECT, &format!("-p tcp -j REDIRECT --to-ports {}", opts.inbound_port));
    rule(REDIRECT, &format!("-p tcp -j REDIRECT --to-ports {}", opts.outbound_port));

    let proxy_ports = [opts.inbound_port, opts.outbound_port, opts.admin_port];
    for port in dedup(proxy_ports.iter().chain(&opts.skip_inbound_ports.0)) {
        rule(INBOUND, &format!("-p tcp --dport {port} -j RETURN"));
    }
    rule(INBOUND, &format!("-p tcp -j {IN_REDIRECT}"));

    rule(OUTPUT, &format!("-m owner --uid-owner {} -j RETURN", opts.proxy_uid));
    if let Some(gid) = opts.proxy_gid {
        rule(OUTPUT, &format!("-m owner --gid-owner {gid} -j RETURN"));
    }
    rule(OUTPUT, &format!("-d {} -j RETURN", Cidr::loopback(family)));
    // What is left on `lo` is the app calling its own pod IP: serve it as inbound; what the
    // inbound chain does not redirect is left alone rather than taken as outbound.
    rule(OUTPUT, &format!("-o lo -j {INBOUND}"));
    rule(OUTPUT, "-o lo -j RETURN");
    for port in dedup(&opts.skip_outbound_ports.0) {
        rule(OUTPUT, &format!("-p tcp --dport {port} -j RETURN"));
    }
    let cidrs = opts.skip_outbound_cidrs.0.iter();
    for cidr in dedup(cidrs.filter(|c| c.family() == family)) {
        rule(OUTPUT, &format!("-d {cidr} -j RETURN"));
    }
    rule(OUTPUT, &format!("-j {REDIRECT}"));

    for (from, to) in JUMPS {
        rule(from, &format!("-p tcp -j {to}"));
    }
    out.push_str("COMMIT\n");
    out
}

/// The `iptables-restore --noflush` input that removes what [`rules`] installed, given the
/// current nat table (`iptables-save -t nat`); `None` when none of it is there.
///
/// Removes every `PREROUTING`/`OUTPUT` rule that jumps to one of our chains, then flushes and
/// deletes our chains. Nothing else is touched.
pub fn cleanup_input(saved_nat_table: &str) -> Option<String> {
    let mut jumps = Vec::new();
    let mut chains = Vec::new();
    for line in saved_nat_table.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if CHAINS.contains(&name) {
                chains.push(name);
            }
        } else if let Some(spec) = line.strip_prefix("-A ") {
            let mut words = spec.split_whitespace();
            let chain = words.next().unwrap_or_default();
            let target = words.skip_while(|w| *w != "-j").nth(1);
            let ours = target.is_some_and(|t| CHAINS.contains(&t));
            if ours && JUMPS.iter().any(|(from, _)| *from == chain) {
                jumps.push(spec);
            }
        }
    }
    if jumps.is_empty() && chains.is_empty() {
        return None;
    }
    let mut out = String::from("*nat\n");
    for spec in jumps {
        let _ = writeln!(out, "-D {spec}");
    }
    // Flush all before deleting any: our chains jump to each other.
    for chain in &chains {
        let _ = writeln!(out, "-F {chain}");
    }
    for chain in &chains {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// The items in order, each once: a port given twice would otherwise be two identical rules.
fn dedup<'a, T: PartialEq + 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<&'a T> {
    let mut seen: Vec<&T> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        init: InitOptions,
    }

    /// Options as `pillion init ARGS` gives them (no test here sets a `PILLION_` variable).
    fn opts(args: &[&str]) -> InitOptions {
        let args = std::iter::once("init").chain(args.iter().copied());
        Cli::try_parse_from(args).unwrap().init
    }

    const DEFAULT_V4: &str = "\
*nat
:PILLION_INBOUND - [0:0]
:PILLION_IN_REDIRECT - [0:0]
:PILLION_OUTPUT - [0:0]
:PILLION_REDIRECT - [0:0]
-A PILLION_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PILLION_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A PILLION_INBOUND -p tcp --dport 15006 -j RETURN
-A PILLION_INBOUND -p tcp --dport 15001 -j RETURN
-A PILLION_INBOUND -p tcp --dport 15020 -j RETURN
-A PILLION_INBOUND -p tcp -j PILLION_IN_REDIRECT
-A PILLION_OUTPUT -m owner --uid-owner 2102 -j RETURN
-A PILLION_OUTPUT -d 127.0.0.0/8 -j RETURN
-A PILLION_OUTPUT -o lo -j PILLION_INBOUND
-A PILLION_OUTPUT -o lo -j RETURN
-A PILLION_OUTPUT -j PILLION_REDIRECT
-A PREROUTING -p tcp -j PILLION_INBOUND
-A OUTPUT -p tcp -j PILLION_OUTPUT
COMMIT
";

    #[test]
    fn defaults_redirect_all_tcp_but_the_proxys_own() {
        assert_eq!(rules(&opts(&[]), Family::V4), DEFAULT_V4);
    }

    #[test]
    fn ipv6_defaults_differ_only_in_the_loopback_network() {
        let v6 = rules(&opts(&[]), Family::V6);
        assert_eq!(v6, DEFAULT_V4.replace("-d 127.0.0.0/8 -j RETURN", "-d ::1/128 -j RETURN"));
    }

    #[test]
    fn ports_uid_and_gid_are_taken_from_the_options() {
        let o = opts(&[
            "--inbound-port=7006",
            "--outbound-port=7001",
            "--admin-port=7020",
            "--proxy-uid=1337",
            "--proxy-gid=1338",
        ]);
        let r = rules(&o, Family::V4);
        for line in [
            "-A PILLION_IN_REDIRECT -p tcp -j REDIRECT --to-ports 7006\n",
            "-A PILLION_REDIRECT -p tcp -j REDIRECT --to-ports 7001\n",
            "-A PILLION_INBOUND -p tcp --dport 7006 -j RETURN\n\
             -A PILLION_INBOUND -p tcp --dport 7001 -j RETURN\n\
             -A PILLION_INBOUND -p tcp --dport 7020 -j RETURN\n\
             -A PILLION_INBOUND -p tcp -j PILLION_IN_REDIRECT\n",
            "-A PILLION_OUTPUT -m owner --uid-owner 1337 -j RETURN\n\
             -A PILLION_OUTPUT -m owner --gid-owner 1338 -j RETURN\n\
             -A PILLION_OUTPUT -d 127.0.0.0/8 -j RETURN\n",
        ] {
            assert!(r.contains(line), "missing\n{line}in\n{r}");
        }
        assert!(!r.contains("15006") && !r.contains("15001") && !r.contains("15020"));
        assert!(!r.contains("2102"));
    }

    #[test]
    fn skipped_ports_return_before_the_redirect_each_once() {
        let o = opts(&["--skip-inbound-ports=22, 9090,15020,22", "--skip-outbound-ports", "3306,53"]);
        let r = rules(&o, Family::V4);
        let inbound: Vec<&str> = r.lines().filter(|l| l.starts_with("-A PILLION_INBOUND")).collect();
        assert_eq!(
            inbound,
            [
                "-A PILLION_INBOUND -p tcp --dport 15006 -j RETURN",
                "-A PILLION_INBOUND -p tcp --dport 15001 -j RETURN",
                "-A PILLION_INBOUND -p tcp --dport 15020 -j RETURN",
                "-A PILLION_INBOUND -p tcp --dport 22 -j RETURN",
                "-A PILLION_INBOUND -p tcp --dport 9090 -j RETURN",
                "-A PILLION_INBOUND -p tcp -j PILLION_IN_REDIRECT",
            ]
        );
        assert!(r.contains(
            "-A PILLION_OUTPUT -o lo -j RETURN\n\
             -A PILLION_OUTPUT -p tcp --dport 3306 -j RETURN\n\
             -A PILLION_OUTPUT -p tcp --dport 53 -j RETURN\n\
             -A PILLION_OUTPUT -j PILLION_REDIRECT\n"
        ));
    }

    #[test]
    fn skipped_networks_go_to_their_own_family_only() {
        let o = opts(&["--skip-outbound-cidrs=10.0.0.0/8,fd00::/8,192.168.1.7,2001:db8::1/64"]);
        let v4 = rules(&o, Family::V4);
        let v6 = rules(&o, Family::V6);
        assert!(v4.contains(
            "-A PILLION_OUTPUT -d 10.0.0.0/8 -j RETURN\n\
             -A PILLION_OUTPUT -d 192.168.1.7/32 -j RETURN\n\
             -A PILLION_OUTPUT -j PILLION_REDIRECT\n"
        ));
        assert!(v6.contains(
            "-A PILLION_OUTPUT -d fd00::/8 -j RETURN\n\
             -A PILLION_OUTPUT -d 2001:db8::/64 -j RETURN\n\
             -A PILLION_OUTPUT -j PILLION_REDIRECT\n"
        ));
        assert!(!v4.contains("fd00") && !v4.contains("2001:db8"));
        assert!(!v6.contains("10.0.0.0") && !v6.contains("192.168"));
    }

    #[test]
    fn cleanup_removes_our_jumps_and_chains_and_nothing_else() {
        let saved = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [3:180]
:OTHER - [0:0]
:PILLION_INBOUND - [0:0]
:PILLION_OUTPUT - [0:0]
-A PREROUTING -p tcp -j PILLION_INBOUND
-A PREROUTING -p udp -j OTHER
-A OUTPUT -p tcp -j PILLION_OUTPUT
-A OUTPUT -p tcp -j PILLION_OUTPUT
-A OUTPUT -d 10.1.0.0/16 -j RETURN
-A OTHER -j RETURN
-A PILLION_OUTPUT -o lo -j PILLION_INBOUND
COMMIT
";
        assert_eq!(
            cleanup_input(saved).unwrap(),
            "\
*nat
-D PREROUTING -p tcp -j PILLION_INBOUND
-D OUTPUT -p tcp -j PILLION_OUTPUT
-D OUTPUT -p tcp -j PILLION_OUTPUT
-F PILLION_INBOUND
-F PILLION_OUTPUT
-X PILLION_INBOUND
-X PILLION_OUTPUT
COMMIT
"
        );
    }

    #[test]
    fn cleanup_of_a_table_without_our_rules_is_nothing() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:PILLION_OTHER - [0:0]\n\
                     -A OUTPUT -j PILLION_OTHER\nCOMMIT\n";
        assert_eq!(cleanup_input(saved), None);
    }

    #[test]
    fn cleanup_input_removes_exactly_what_rules_installs() {
        // What `iptables-save` prints for our rules is near enough to our input for this.
        let installed = rules(&opts(&["--proxy-gid=1"]), Family::V4);
        let undo = cleanup_input(&installed).unwrap();
        assert_eq!(undo.lines().filter(|l| l.starts_with("-D ")).count(), JUMPS.len());
        for chain in CHAINS {
            assert!(undo.contains(&format!("-F {chain}\n")));
            assert!(undo.contains(&format!("-X {chain}\n")));
        }
    }
}
