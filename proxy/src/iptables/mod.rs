//! `pillion init`: the nat-table rules that send a pod's TCP through its sidecar. Run once per
//! pod, before the app starts, by an init container with `NET_ADMIN`.
//!
//! `options` holds the flags; `rules` builds the `iptables-restore` input from them alone (pure,
//! tested without root); `apply` runs the iptables binaries. A real run, per address family,
//! first removes any earlier copy of our rules (so re-running leaves exactly one), then restores
//! the new ones with `--noflush`, which leaves every rule that is not ours alone. `--cleanup`
//! does only the first half. All of our rules live in our own chains, reached by one jump each
//! from `PREROUTING` and `OUTPUT`; the chain names are the handle for finding them again.

mod apply;
mod options;
mod rules;

pub use options::{Cidr, CidrList, InitOptions, PortList, ValueError, parse_port};
pub use rules::{CHAINS, cleanup_input, rules};

/// An address family, each with its own iptables binaries and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`.
    V6,
}

impl Family {
    /// `IPv4` or `IPv6`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The binary that loads rules.
    pub fn restore_binary(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    /// The binary that prints the current rules.
    pub fn save_binary(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }
}

/// Why `pillion init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Two of the proxy's ports are the same.
    #[error("{a} and {b} are both {port}; the proxy's ports must differ")]
    SamePort {
        /// One flag.
        a: &'static str,
        /// The other.
        b: &'static str,
        /// Their port.
        port: u16,
    },
    /// An iptables binary is not installed.
    #[error(
        "`{binary}` was not found on PATH; install the `iptables` package{hint}",
        hint = if binary.starts_with("ip6") { " (or pass --no-ipv6)" } else { "" }
    )]
    Missing {
        /// The binary.
        binary: &'static str,
    },
    /// The kernel refused: not root, or no NET_ADMIN capability.
    #[error(
        "`{binary}` was denied permission: run `pillion init` as root with the NET_ADMIN \
         capability (and NET_RAW for iptables-legacy); in Kubernetes, an init container with \
         securityContext.capabilities.add: [NET_ADMIN, NET_RAW]\n{stderr}"
    )]
    Denied {
        /// The binary.
        binary: &'static str,
        /// What it said.
        stderr: String,
    },
    /// An iptables binary failed for another reason.
    #[error("`{binary}` failed{}\n{stderr}", at_line(line))]
    Failed {
        /// The binary.
        binary: &'static str,
        /// What it said.
        stderr: String,
        /// The input line it rejected, when it named one.
        line: Option<(usize, String)>,
    },
    /// Running a binary failed before it could say anything.
    #[error("cannot run `{binary}`: {source}")]
    Io {
        /// The binary.
        binary: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// Where in its input a failing `iptables-restore` stopped, for [`InitError::Failed`].
fn at_line(line: &Option<(usize, String)>) -> String {
    match line {
        Some((n, text)) => format!(" at line {n} of its input: {text}"),
        None => String::new(),
    }
}

/// Runs `pillion init`: prints, installs or removes the rules, as the options say.
pub fn run(opts: &InitOptions) -> Result<(), InitError> {
    opts.validate()?;
    let ip6 = apply::on_path(Family::V6.restore_binary());
    if opts.dry_run && !opts.cleanup {
        for family in opts.families(ip6) {
            print!("# {} --noflush\n{}", family.restore_binary(), rules(opts, family));
        }
        return Ok(());
    }
    for family in opts.families(ip6) {
        let current = match apply::save(family) {
            Ok(current) => current,
            // A kernel without IPv6 has no IPv6 nat table; nothing to intercept there.
            Err(InitError::Failed { stderr, .. }) if family == Family::V6 && opts.ipv6_is_optional() => {
                tracing::warn!(%stderr, "no IPv6 nat table here; IPv6 left alone");
                continue;
            }
            Err(e) => return Err(e),
        };
        let undo = cleanup_input(&current);
        if opts.cleanup {
            match (undo, opts.dry_run) {
                (None, _) => tracing::info!(family = family.name(), "nothing of ours to remove"),
                (Some(undo), true) => print!("# {} --noflush\n{undo}", family.restore_binary()),
                (Some(undo), false) => {
                    apply::restore(family, &undo)?;
                    tracing::info!(family = family.name(), "removed our rules");
                }
            }
            continue;
        }
        if let Some(undo) = undo {
            apply::restore(family, &undo)?;
            tracing::info!(family = family.name(), "removed an earlier copy of our rules");
        }
        let input = rules(opts, family);
        tracing::debug!(family = family.name(), %input, "installing");
        apply::restore(family, &input)?;
        tracing::info!(
            family = family.name(),
            inbound = opts.inbound_port,
            outbound = opts.outbound_port,
            proxy_uid = opts.proxy_uid,
            "interception rules installed"
        );
    }
    Ok(())
}
