//! `pillion init`: the iptables rules it prints, installs and removes. The dry run needs no root;
//! installing runs in a network namespace of its own, so the host's rules are never touched.

use std::{
    io::Write,
    process::{Command, Output},
};

use pillion_e2e::{
    netns::{Netns, is_root, skipped},
    workspace_bin,
};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dry_run_prints_the_rules_for_each_family_and_needs_no_root() {
    let out = run(Command::new(workspace_bin("pillion")).args([
        "init",
        "--dry-run",
        "--skip-outbound-cidrs",
        "10.0.0.0/8,fd00::/8",
        "--skip-inbound-ports",
        "22",
    ]));
    let text = stdout(&out);
    let (v4, v6) = text
        .split_once("# ip6tables-restore --noflush\n")
        .unwrap_or_else(|| panic!("no IPv6 section in\n{text}"));
    assert!(v4.starts_with("# iptables-restore --noflush\n*nat\n"), "{text}");

    for rules in [v4, v6] {
        for line in [
            ":PILLION_INBOUND - [0:0]",
            ":PILLION_IN_REDIRECT - [0:0]",
            ":PILLION_OUTPUT - [0:0]",
            ":PILLION_REDIRECT - [0:0]",
            "-A PREROUTING -p tcp -j PILLION_INBOUND",
            "-A OUTPUT -p tcp -j PILLION_OUTPUT",
            "-A PILLION_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
            "-A PILLION_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
            // The proxy's own traffic is never redirected.
            "-A PILLION_OUTPUT -m owner --uid-owner 2102 -j RETURN",
            // Nor is traffic to the admin port, or to a skipped inbound port.
            "-A PILLION_INBOUND -p tcp --dport 15020 -j RETURN",
            "-A PILLION_INBOUND -p tcp --dport 22 -j RETURN",
            // The app calling its own pod IP goes through inbound.
            "-A PILLION_OUTPUT -o lo -j PILLION_INBOUND",
            "COMMIT",
        ] {
            assert!(rules.lines().any(|l| l == line), "no `{line}` in\n{rules}");
        }
        // Exceptions come before the catch-all redirects.
        let pos = |needle: &str| rules.find(needle).expect(needle);
        assert!(pos("--uid-owner 2102") < pos("-j PILLION_REDIRECT\n"));
        assert!(pos("--dport 22 -j RETURN") < pos("-p tcp -j PILLION_IN_REDIRECT"));
    }
    assert!(v4.contains("-A PILLION_OUTPUT -d 10.0.0.0/8 -j RETURN\n"), "{v4}");
    assert!(v4.contains("-A PILLION_OUTPUT -d 127.0.0.0/8 -j RETURN\n"), "{v4}");
    assert!(!v4.contains("fd00::") && !v4.contains("::1/128"), "{v4}");
    assert!(v6.contains("-A PILLION_OUTPUT -d fd00::/8 -j RETURN\n"), "{v6}");
    assert!(v6.contains("-A PILLION_OUTPUT -d ::1/128 -j RETURN\n"), "{v6}");
    assert!(!v6.contains("10.0.0.0") && !v6.contains("127.0.0"), "{v6}");
}

#[test]
fn a_bad_flag_value_fails_with_the_reason() {
    let out = Command::new(workspace_bin("pillion"))
        .args(["init", "--dry-run", "--skip-outbound-cidrs", "10.0.0.0/40"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"10.0.0.0/40\" is not a network"), "{err}");
}

/// The nat table of one family in `ns`, without the lines that change on their own: comments
/// (which carry a timestamp) and the packet counters on chain lines.
fn nat_table(ns: &Netns, save: &str) -> String {
    let out = run(&mut ns.exec(save, &["-t", "nat"]));
    stdout(&out)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rsplit_once(" [") {
            Some((chain, _counters)) if l.starts_with(':') => chain,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn init_then_cleanup_restores_the_rule_set_exactly() {
    let test = "init_then_cleanup_restores_the_rule_set_exactly";
    if !is_root() {
        skipped(test);
        return;
    }
    let pillion = workspace_bin("pillion");
    let pillion = pillion.to_str().expect("a UTF-8 path");
    let ns = Netns::new(format!("pillion-init-test-{}", std::process::id()));
    let ipv6 = ns.exec("ip6tables-save", &["-t", "nat"]).output().is_ok_and(|o| o.status.success());
    let mut families = vec![("iptables-save", "iptables-restore")];
    if ipv6 {
        families.push(("ip6tables-save", "ip6tables-restore"));
    }

    // Rules that are not ours, which init and cleanup must leave exactly as they are.
    let foreign = "*nat\n:OTHER - [0:0]\n-A OUTPUT -p udp -j OTHER\n\
                   -A PREROUTING -p tcp --dport 8443 -j RETURN\n-A OTHER -j RETURN\nCOMMIT\n";
    for (_, restore) in &families {
        let mut child = ns
            .exec(restore, &["--noflush"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {restore}: {e}"));
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(foreign.as_bytes()).expect("write rules");
        drop(pipe);
        assert!(child.wait().expect(restore).success(), "{restore} refused the foreign rules");
    }
    let families: Vec<&str> = families.iter().map(|(save, _)| *save).collect();

    let before: Vec<String> = families.iter().map(|f| nat_table(&ns, f)).collect();

    run(&mut ns.exec(pillion, &["init"]));
    let installed: Vec<String> = families.iter().map(|f| nat_table(&ns, f)).collect();
    for (table, save) in installed.iter().zip(&families) {
        for line in [
            ":PILLION_INBOUND -",
            ":PILLION_IN_REDIRECT -",
            ":PILLION_OUTPUT -",
            ":PILLION_REDIRECT -",
            "-A PREROUTING -p tcp -j PILLION_INBOUND",
            "-A OUTPUT -p tcp -j PILLION_OUTPUT",
            "-A OUTPUT -p udp -j OTHER",
        ] {
            assert!(table.lines().any(|l| l == line), "{save}: no `{line}` in\n{table}");
        }
    }

    run(&mut ns.exec(pillion, &["init"]));
    for (save, first) in families.iter().zip(&installed) {
        let again = nat_table(&ns, save);
        assert_eq!(&again, first, "{save}: a second init changed the rules");
        let mut rules: Vec<&str> = again.lines().filter(|l| l.starts_with("-A ")).collect();
        let all = rules.len();
        rules.sort_unstable();
        rules.dedup();
        assert_eq!(rules.len(), all, "{save}: a rule appears twice in\n{again}");
    }

    run(&mut ns.exec(pillion, &["init", "--cleanup"]));
    let after: Vec<String> = families.iter().map(|f| nat_table(&ns, f)).collect();
    assert_eq!(after, before, "cleanup did not restore the rule set exactly");

    // Cleaning up what is already clean is not an error, and changes nothing.
    run(&mut ns.exec(pillion, &["init", "--cleanup"]));
    let again: Vec<String> = families.iter().map(|f| nat_table(&ns, f)).collect();
    assert_eq!(again, before);
}
