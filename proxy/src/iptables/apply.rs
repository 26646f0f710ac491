//! Running the iptables binaries, and turning how they fail into errors that say what to do.

use std::{
    env,
    io::{ErrorKind, Write},
    process::{Command, Output, Stdio},
};

use super::{Family, InitError};

/// Whether `binary` is an executable file in a PATH directory.
pub(super) fn on_path(binary: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = env::var_os("PATH") else {
        return false;
    };
    env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(binary)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The current nat table of one family, as `iptables-save -t nat` prints it.
pub(super) fn save(family: Family) -> Result<String, InitError> {
    let binary = family.save_binary();
    let out = exec(binary, &["-t", "nat"], None)?;
    if !out.status.success() {
        return Err(failure(binary, &out, None));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Feeds `input` to `iptables-restore --noflush` (or the IPv6 one): one atomic change that
/// leaves every rule it does not mention alone.
pub(super) fn restore(family: Family, input: &str) -> Result<(), InitError> {
    let binary = family.restore_binary();
    let out = exec(binary, &["--noflush"], Some(input))?;
    if !out.status.success() {
        return Err(failure(binary, &out, Some(input)));
    }
    Ok(())
}

fn exec(binary: &'static str, args: &[&str], stdin: Option<&str>) -> Result<Output, InitError> {
    let io = |source: std::io::Error| match source.kind() {
        ErrorKind::NotFound => InitError::Missing { binary },
        _ => InitError::Io { binary, source },
    };
    let mut child = Command::new(binary)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Dropping the pipe after writing is the end of input the binary waits for. A binary
        // that quits early closes its end; its exit status and stderr then say why.
        match pipe.write_all(input.as_bytes()) {
            Err(e) if e.kind() != ErrorKind::BrokenPipe => return Err(io(e)),
            _ => {}
        }
    }
    child.wait_with_output().map_err(io)
}

/// The error for a binary that exited unsuccessfully.
fn failure(binary: &'static str, out: &Output, input: Option<&str>) -> InitError {
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let denied = ["Permission denied", "Operation not permitted", "you must be root"];
    if denied.iter().any(|d| stderr.contains(d)) {
        return InitError::Denied { binary, stderr };
    }
    let line = input.and_then(|input| {
        let n = failed_line(&stderr)?;
        let text = input.lines().nth(n.checked_sub(1)?)?;
        Some((n, text.to_string()))
    });
    InitError::Failed { binary, stderr, line }
}

/// The input line number a failing `iptables-restore` names: `Error occurred at line: 3` from
/// the nft flavour, `line 3 failed` from the legacy one.
fn failed_line(stderr: &str) -> Option<usize> {
    let number = |s: &str| {
        let digits: String = s.trim_start().chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    stderr.lines().find_map(|l| {
        if let Some((_, rest)) = l.split_once("line:") {
            number(rest)
        } else if let Some((_, rest)) = l.split_once("line ") {
            number(rest).filter(|_| l.contains("failed"))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_line_is_read_from_both_iptables_flavours() {
        let nft = "iptables-restore v1.8.9 (nf_tables): unknown protocol \"bogus\" specified\n\
                   Error occurred at line: 3\nTry `iptables-restore -h' for more information.";
        assert_eq!(failed_line(nft), Some(3));
        assert_eq!(failed_line("iptables-restore: line 12 failed"), Some(12));
        assert_eq!(failed_line("something else went wrong"), None);
    }

    #[test]
    fn a_missing_binary_names_it_and_the_package() {
        let e = exec("pillion-no-such-iptables", &[], None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`pillion-no-such-iptables` was not found on PATH"), "{msg}");
        assert!(msg.contains("install the `iptables` package"), "{msg}");
    }

    #[test]
    fn a_rejected_line_is_quoted_in_the_error() {
        let out = Output {
            status: Command::new("false").status().unwrap(),
            stdout: Vec::new(),
            stderr: b"iptables-restore v1.8.9 (nf_tables): Chain 'NOPE' does not exist\n\
                      Error occurred at line: 2\n"
                .to_vec(),
        };
        let e = failure("iptables-restore", &out, Some("*nat\n-A OUTPUT -j NOPE\nCOMMIT\n"));
        let msg = e.to_string();
        assert!(
            msg.starts_with("`iptables-restore` failed at line 2 of its input: -A OUTPUT -j NOPE\n"),
            "{msg}"
        );
        assert!(msg.contains("Chain 'NOPE' does not exist"), "{msg}");
    }

    #[test]
    fn permission_errors_say_root_and_net_admin() {
        let out = Output {
            status: Command::new("false").status().unwrap(),
            stdout: Vec::new(),
            stderr: b"iptables-restore v1.8.9 (nf_tables): Could not fetch rule set generation \
                      id: Permission denied (you must be root)\n"
                .to_vec(),
        };
        let msg = failure("iptables-restore", &out, Some("*nat\n")).to_string();
        assert!(msg.contains("was denied permission"), "{msg}");
        assert!(msg.contains("NET_ADMIN"), "{msg}");
        assert!(msg.contains("you must be root"), "{msg}");
    }
}
