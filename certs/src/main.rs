//! `pillion-certs`: create a mesh CA, issue workload certificates, inspect certificates.
//!
//! Every flag can also be set by an environment variable (shown in `--help`).
//! Exit status: 0 on success, 1 on any error and when `inspect --ca` finds that
//! the certificate does not chain to the CA.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use pillion_certs::cert::format_time;
use pillion_certs::{Ca, CertInfo, SpiffeId, TrustBundle, Validity, ca, create_csr, duration, pem};
use rustls_pki_types::UnixTime;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Parser)]
#[command(name = "pillion-certs", version, about = "SPIFFE certificates for the Pillion mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the mesh CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issue a workload key and certificate: writes cert.pem, key.pem (0600) and ca.pem to --out.
    Issue(IssueArgs),
    /// Create a workload key and CSR: writes key.pem (0600) and csr.pem to --out.
    Csr(CsrArgs),
    /// Sign a CSR whose only SAN must be --identity: writes the certificate to --out-file.
    Sign(SignArgs),
    /// Print a certificate's identity, names and validity; with --ca, check it chains to that CA.
    Inspect(InspectArgs),
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create a root CA (ECDSA P-256) for a trust domain: writes ca.pem and ca-key.pem (0600).
    Init(CaInitArgs),
}

#[derive(Args)]
struct CaInitArgs {
    /// Directory to write ca.pem and ca-key.pem into (created if missing).
    #[arg(long, env = "PILLION_CA_DIR")]
    out: PathBuf,
    /// Trust domain the CA issues identities for.
    #[arg(long, env = "PILLION_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Lifetime of the CA certificate (e.g. 87600h = 10 years).
    #[arg(long, env = "PILLION_CA_TTL", default_value = "87600h", value_parser = duration::parse_duration)]
    ttl: Duration,
    /// Replace an existing CA key in --out.
    #[arg(long, env = "PILLION_CA_FORCE")]
    force: bool,
}

#[derive(Args)]
struct ValidityArgs {
    /// Certificate lifetime: 24h, 30m, 90s, 7d, 1h30m.
    #[arg(long, env = "PILLION_CERT_TTL", default_value = "24h", value_parser = duration::parse_duration)]
    ttl: Duration,
    /// For tests: start validity at this signed offset from now, e.g. -48h (with
    /// --ttl 24h: already expired) or +1h (not yet valid). Default: 1 minute ago.
    #[arg(long, env = "PILLION_CERT_VALID_FROM", allow_hyphen_values = true,
          value_parser = duration::parse_offset, conflicts_with = "not_before")]
    valid_from: Option<time::Duration>,
    /// For tests: exact start of validity, RFC 3339 (e.g. 2030-01-01T00:00:00Z).
    #[arg(long, env = "PILLION_CERT_NOT_BEFORE", value_parser = parse_rfc3339)]
    not_before: Option<OffsetDateTime>,
    /// For tests: exact end of validity, RFC 3339; overrides --ttl.
    #[arg(long, env = "PILLION_CERT_NOT_AFTER", value_parser = parse_rfc3339)]
    not_after: Option<OffsetDateTime>,
}

#[derive(Args)]
struct IssueArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long = "ca", env = "PILLION_CA_DIR")]
    ca_dir: PathBuf,
    /// Workload identity, e.g. spiffe://cluster.local/ns/shop/sa/web (must be in the CA's trust domain).
    #[arg(long, env = "PILLION_IDENTITY", value_parser = parse_spiffe_id)]
    identity: SpiffeId,
    /// Directory to write cert.pem, key.pem and ca.pem into (created if missing).
    #[arg(long, env = "PILLION_CERT_DIR")]
    out: PathBuf,
    #[command(flatten)]
    validity: ValidityArgs,
}

#[derive(Args)]
struct CsrArgs {
    /// Workload identity the CSR asks for.
    #[arg(long, env = "PILLION_IDENTITY", value_parser = parse_spiffe_id)]
    identity: SpiffeId,
    /// Directory to write key.pem and csr.pem into (created if missing).
    #[arg(long, env = "PILLION_CERT_DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct SignArgs {
    /// Directory holding ca.pem and ca-key.pem.
    #[arg(long = "ca", env = "PILLION_CA_DIR")]
    ca_dir: PathBuf,
    /// The CSR file (PEM).
    #[arg(long, env = "PILLION_CSR_FILE")]
    csr: PathBuf,
    /// The identity the CSR must name, and nothing else.
    #[arg(long, env = "PILLION_IDENTITY", value_parser = parse_spiffe_id)]
    identity: SpiffeId,
    /// Where to write the signed certificate (PEM).
    #[arg(long, env = "PILLION_CERT_FILE")]
    out_file: PathBuf,
    #[command(flatten)]
    validity: ValidityArgs,
}

#[derive(Args)]
struct InspectArgs {
    /// Certificate file (PEM); the first certificate is inspected, the rest are intermediates.
    #[arg(env = "PILLION_INSPECT_FILE")]
    file: PathBuf,
    /// CA bundle (PEM) the certificate must chain to; exit status 1 if it does not.
    #[arg(long = "ca", env = "PILLION_INSPECT_CA")]
    ca_file: Option<PathBuf>,
}

fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}); e.g. 2030-01-01T00:00:00Z"))
}

fn parse_spiffe_id(s: &str) -> Result<SpiffeId, String> {
    SpiffeId::parse(s).map_err(|e| format!("bad SPIFFE ID: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ca { command: CaCommand::Init(args) } => ca_init(args),
        Command::Issue(args) => issue(args),
        Command::Csr(args) => csr(args),
        Command::Sign(args) => sign(args),
        Command::Inspect(args) => inspect(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pillion-certs: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ca_init(args: CaInitArgs) -> anyhow::Result<ExitCode> {
    let validity = Validity::for_ttl(args.ttl)?;
    let ca = Ca::generate(&args.trust_domain, &validity)?;
    ca.save(&args.out, args.force)?;
    println!(
        "created CA for trust domain {} in {} (expires {})",
        ca.trust_domain(),
        args.out.display(),
        format_time(validity.not_after)
    );
    Ok(ExitCode::SUCCESS)
}

impl ValidityArgs {
    fn resolve(&self) -> anyhow::Result<Validity> {
        let now = OffsetDateTime::now_utc();
        let explicit_start = self.not_before.or(self.valid_from.map(|off| now + off));
        let start = explicit_start.unwrap_or(now - pillion_certs::validity::CLOCK_SKEW_ALLOWANCE);
        let ttl = time::Duration::try_from(self.ttl).context("--ttl out of range")?;
        let end = match (self.not_after, explicit_start) {
            (Some(end), _) => end,
            (None, Some(start)) => start + ttl,
            (None, None) => now + ttl,
        };
        Ok(Validity::new(start, end)?)
    }
}

fn issue(args: IssueArgs) -> anyhow::Result<ExitCode> {
    let validity = args.validity.resolve()?;
    let ca = Ca::load(&args.ca_dir)?;
    let issued = ca.issue(&args.identity, &validity)?;
    ca::write_workload_files(&args.out, &issued, ca.cert_pem())?;
    println!(
        "issued {} in {} (valid {} to {})",
        args.identity,
        args.out.display(),
        format_time(validity.not_before),
        format_time(validity.not_after)
    );
    Ok(ExitCode::SUCCESS)
}

fn csr(args: CsrArgs) -> anyhow::Result<ExitCode> {
    let req = create_csr(&args.identity)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    pem::write_private(&args.out.join(ca::KEY_FILE), req.key_pem.as_bytes())?;
    pem::write_public(&args.out.join("csr.pem"), req.csr_pem.as_bytes())?;
    println!("wrote key.pem and csr.pem for {} in {}", args.identity, args.out.display());
    Ok(ExitCode::SUCCESS)
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let validity = args.validity.resolve()?;
    let ca = Ca::load(&args.ca_dir)?;
    let csr_pem =
        std::fs::read_to_string(&args.csr).with_context(|| format!("{}: cannot read", args.csr.display()))?;
    let cert_pem = ca.sign_csr(&csr_pem, &args.identity, &validity)?;
    pem::write_public(&args.out_file, cert_pem.as_bytes())?;
    println!("signed {} into {}", args.identity, args.out_file.display());
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let chain = pem::load_certs(&args.file)?;
    let (leaf, intermediates) = match chain.split_first() {
        Some(split) => split,
        None => bail!("{}: no certificate in file", args.file.display()),
    };
    let info = CertInfo::parse(leaf, &args.file)?;
    let now = OffsetDateTime::now_utc();
    println!("file: {}", args.file.display());
    match info.spiffe_id(&args.file) {
        Ok(id) => println!("identity: {id}"),
        Err(e) => println!("identity: none ({e})"),
    }
    println!("subject: {}", info.subject);
    println!("issuer: {}", info.issuer);
    println!("serial: {}", info.serial);
    println!("not-before: {} ({})", format_time(info.not_before), info.not_before.unix_timestamp());
    println!("not-after: {} ({})", format_time(info.not_after), info.not_after.unix_timestamp());
    let status = if now > info.not_after {
        "expired"
    } else if now < info.not_before {
        "not yet valid"
    } else {
        "valid"
    };
    println!("status: {status}");
    println!("expired: {}", if now > info.not_after { "yes" } else { "no" });
    println!("ca: {}", if info.is_ca { "yes" } else { "no" });
    if !info.extended_key_usages.is_empty() {
        println!("usages: {}", info.extended_key_usages.join(", "));
    }
    if !info.dns_sans.is_empty() {
        println!("dns: {}", info.dns_sans.join(", "));
    }
    if chain.len() > 1 {
        println!("chain-length: {}", chain.len());
    }
    let Some(ca_file) = args.ca_file else {
        return Ok(ExitCode::SUCCESS);
    };
    let bundle = TrustBundle::load(&ca_file)?;
    // Check the signatures at a time inside the certificate's window: expiry is
    // reported above, this answers "was it issued by that CA".
    let at = if info.not_before <= info.not_after { now.clamp(info.not_before, info.not_after) } else { now };
    match bundle.verify(leaf, intermediates, unix_time(at)) {
        Ok(()) => {
            println!("chain: ok ({})", ca_file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("chain: FAILED ({}): {e}", ca_file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn unix_time(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap_or(0)))
}
