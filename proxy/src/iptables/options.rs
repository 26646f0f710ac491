//! The options of `pillion init` and the flag values they are made of: ports, networks, and
//! comma lists of each, each checked as it is parsed.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use super::{Family, InitError};

/// Options of `pillion init`; every flag also reads an environment variable, as an init
/// container is configured from its pod spec.
#[derive(Debug, Clone, clap::Args)]
pub struct InitOptions {
    /// Port of the proxy's inbound listener; TCP arriving at the pod is redirected here.
    #[arg(long, env = "PILLION_INBOUND_PORT", default_value_t = 15006, value_parser = parse_port)]
    pub inbound_port: u16,
    /// Port of the proxy's transparent outbound listener; TCP leaving the app is redirected here.
    #[arg(long, env = "PILLION_OUTBOUND_PORT", default_value_t = 15001, value_parser = parse_port)]
    pub outbound_port: u16,
    /// Port of the proxy's admin listener; never redirected, so probes reach it directly.
    #[arg(long, env = "PILLION_ADMIN_PORT", default_value_t = 15020, value_parser = parse_port)]
    pub admin_port: u16,
    /// UID the proxy runs as; its own traffic is never redirected (no loops).
    #[arg(long, env = "PILLION_PROXY_UID", default_value_t = 2102)]
    pub proxy_uid: u32,
    /// GID the proxy runs as, also never redirected when given.
    #[arg(long, env = "PILLION_PROXY_GID")]
    pub proxy_gid: Option<u32>,
    /// Inbound ports left alone, comma separated (e.g. `22,9090`).
    #[arg(long, env = "PILLION_SKIP_INBOUND_PORTS", value_name = "PORTS", default_value = "")]
    pub skip_inbound_ports: PortList,
    /// Outbound destination ports left alone, comma separated.
    #[arg(long, env = "PILLION_SKIP_OUTBOUND_PORTS", value_name = "PORTS", default_value = "")]
    pub skip_outbound_ports: PortList,
    /// Outbound destination networks left alone, comma separated, IPv4 or IPv6
    /// (e.g. `10.0.0.0/8,fd00::/8`); each goes into the rules of its own family.
    #[arg(long, env = "PILLION_SKIP_OUTBOUND_CIDRS", value_name = "CIDRS", default_value = "")]
    pub skip_outbound_cidrs: CidrList,
    /// Install the IPv6 rules too, and fail if ip6tables is missing. The default is to install
    /// them whenever `ip6tables-restore` is on PATH.
    #[arg(long, env = "PILLION_IPV6", overrides_with = "no_ipv6")]
    pub ipv6: bool,
    /// IPv4 only.
    #[arg(long, env = "PILLION_NO_IPV6", overrides_with = "ipv6")]
    pub no_ipv6: bool,
    /// Print the `iptables-restore` input for each family and change nothing; needs no root.
    /// It shows IPv6 too unless `--no-ipv6`, as it may run somewhere other than the pod. With
    /// `--cleanup`, print what cleanup would feed `iptables-restore` (this reads the current
    /// rules, so it does need root).
    #[arg(long, env = "PILLION_DRY_RUN")]
    pub dry_run: bool,
    /// Remove what `init` installed (the two jumps and our chains) and nothing else.
    #[arg(long, env = "PILLION_CLEANUP")]
    pub cleanup: bool,
}

impl InitOptions {
    /// Checks what clap cannot see flag by flag.
    pub fn validate(&self) -> Result<(), InitError> {
        let ports = [
            ("--inbound-port", self.inbound_port),
            ("--outbound-port", self.outbound_port),
            ("--admin-port", self.admin_port),
        ];
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if pa == pb {
                    return Err(InitError::SamePort { a, b, port: *pa });
                }
            }
        }
        Ok(())
    }

    /// The families to work on, given whether `ip6tables-restore` is installed here.
    pub(super) fn families(&self, ip6tables_installed: bool) -> Vec<Family> {
        let v6 = !self.no_ipv6 && (self.ipv6 || ip6tables_installed || self.dry_run);
        if v6 { vec![Family::V4, Family::V6] } else { vec![Family::V4] }
    }

    /// Whether IPv6 is ours to skip when the machine has no IPv6 nat table.
    pub(super) fn ipv6_is_optional(&self) -> bool {
        !self.ipv6
    }
}

/// A network (`10.0.0.0/8`, `fd00::/8`) or a single address, which stands for `/32` or `/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The family whose rules this network belongs in.
    pub fn family(&self) -> Family {
        match self.addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The whole loopback network of a family.
    pub(super) fn loopback(family: Family) -> Cidr {
        match family {
            Family::V4 => Cidr { addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), prefix: 8 },
            Family::V6 => Cidr { addr: IpAddr::V6(Ipv6Addr::LOCALHOST), prefix: 128 },
        }
    }
}

impl FromStr for Cidr {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ValueError::Cidr { value: s.to_string(), reason };
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                bad(if max == 32 { "prefix is not 0..=32" } else { "prefix is not 0..=128" })
            })?,
        };
        // iptables masks host bits itself; masking here too keeps our rules, the dry run and
        // `iptables-save` all spelling the network the same way.
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A flag value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// Not a TCP port.
    #[error("{0:?} is not a port (1-65535)")]
    Port(String),
    /// Not a network.
    #[error("{value:?} is not a network like 10.0.0.0/8 or fd00::/8: {reason}")]
    Cidr {
        /// As given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A comma-separated list of ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList(pub Vec<u16>);

impl FromStr for PortList {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split_list(s, parse_port).map(PortList)
    }
}

/// A comma-separated list of networks, IPv4 and IPv6 mixed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split_list(s, str::parse).map(CidrList)
    }
}

/// Splits a comma list. An empty value is an empty list: a pod spec often sets an env var to
/// `""` to mean "none".
fn split_list<T>(s: &str, item: impl Fn(&str) -> Result<T, ValueError>) -> Result<Vec<T>, ValueError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(item).collect()
}

/// Parses one TCP port, allowing the spaces that creep into comma lists in pod specs.
pub fn parse_port(s: &str) -> Result<u16, ValueError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ValueError::Port(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        init: InitOptions,
    }

    fn parse(args: &[&str]) -> Result<InitOptions, String> {
        let args = std::iter::once("init").chain(args.iter().copied());
        Cli::try_parse_from(args).map(|c| c.init).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_port_list_is_refused_naming_the_value() {
        for (args, bad) in [
            (["--skip-inbound-ports", "22,http"], "\"http\""),
            (["--skip-outbound-ports", "22,,80"], "\"\""),
            (["--skip-inbound-ports", "70000"], "\"70000\""),
            (["--inbound-port", "0"], "\"0\""),
        ] {
            let e = parse(&args).unwrap_err();
            assert!(e.contains(&format!("{bad} is not a port (1-65535)")), "{e}");
        }
    }

    #[test]
    fn a_bad_cidr_is_refused_saying_why() {
        for (value, why) in [
            ("10.0.0/8", "not an IP address"),
            ("10.0.0.0/33", "prefix is not 0..=32"),
            ("fd00::/129", "prefix is not 0..=128"),
            ("10.0.0.0/x", "prefix is not 0..=32"),
        ] {
            assert_eq!(
                value.parse::<Cidr>().unwrap_err().to_string(),
                format!("{value:?} is not a network like 10.0.0.0/8 or fd00::/8: {why}")
            );
            let e = parse(&["--skip-outbound-cidrs", value]).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn an_empty_list_is_no_list() {
        let o = parse(&["--skip-inbound-ports=", "--skip-outbound-cidrs", " "]).unwrap();
        assert_eq!(o.skip_inbound_ports, PortList(vec![]));
        assert_eq!(o.skip_outbound_cidrs, CidrList(vec![]));
        assert_eq!(o.skip_outbound_ports, PortList(vec![]));
        let o = parse(&["--skip-outbound-ports", "53, 3306"]).unwrap();
        assert_eq!(o.skip_outbound_ports, PortList(vec![53, 3306]));
    }

    #[test]
    fn cidrs_are_masked_to_their_network() {
        let show = |s: &str| s.parse::<Cidr>().unwrap().to_string();
        assert_eq!(show("10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(show(" 10.1.2.3 "), "10.1.2.3/32");
        assert_eq!(show("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(show("fd00:1::5/16"), "fd00::/16");
        assert_eq!(show("::/0"), "::/0");
    }

    #[test]
    fn the_proxys_ports_must_differ() {
        let o = parse(&["--admin-port", "15006"]).unwrap();
        assert_eq!(
            o.validate().unwrap_err().to_string(),
            "--inbound-port and --admin-port are both 15006; the proxy's ports must differ"
        );
        assert!(parse(&[]).unwrap().validate().is_ok());
    }

    #[test]
    fn ipv6_follows_the_flags_then_the_machine() {
        let fams = |args: &[&str], installed| parse(args).unwrap().families(installed);
        assert_eq!(fams(&[], true), [Family::V4, Family::V6]);
        assert_eq!(fams(&[], false), [Family::V4]);
        assert_eq!(fams(&["--ipv6"], false), [Family::V4, Family::V6]);
        assert_eq!(fams(&["--no-ipv6"], true), [Family::V4]);
        assert_eq!(fams(&["--ipv6", "--no-ipv6"], true), [Family::V4]);
        assert_eq!(fams(&["--no-ipv6", "--ipv6"], false), [Family::V4, Family::V6]);
        // A dry run shows both unless told not to: it need not run where the pod does.
        assert_eq!(fams(&["--dry-run"], false), [Family::V4, Family::V6]);
        assert_eq!(fams(&["--dry-run", "--no-ipv6"], true), [Family::V4]);
    }
}
