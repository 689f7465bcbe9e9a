//! `shoal cert`: a development certificate authority and node certificates (rcgen), so TLS
//! can be turned on with one command. Production clusters should use their own CA; these
//! files are ordinary PEM and work the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Args, Debug)]
pub struct CertArgs {
    #[command(subcommand)]
    pub command: CertCommand,
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// A CA and one certificate per node in DIR (ca.crt, ca.key, node1.crt, node1.key, …):
    /// everything `serve --tls-cert/--tls-key/--tls-ca` needs on one machine.
    Dev {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// How many node certificates.
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Names and addresses the nodes are reached by (repeat; IP addresses or DNS names).
        #[arg(long = "host", default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
        hosts: Vec<String>,
    },
    /// A new CA (DIR/ca.crt, DIR/ca.key).
    Ca {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long, default_value = "Shoal development CA")]
        name: String,
        #[arg(long, default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Revoke DIR/NAME.crt: adds its serial number to the CA's revocation list DIR/ca.crl
    /// (replaced atomically; nodes started with --tls-crl pick it up within seconds).
    Revoke {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// A node certificate signed by DIR's CA (DIR/NAME.crt, DIR/NAME.key): valid for serving
    /// and for presenting to other nodes.
    Node {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        #[arg(long, default_value_t = 397, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
}

/// Runs `shoal cert`; returns the process exit code.
pub fn run(args: CertArgs) -> i32 {
    let result = match args.command {
        CertCommand::Dev { dir, nodes, hosts } => dev(&dir, nodes, &hosts),
        CertCommand::Ca { dir, name, days } => make_ca(&dir, &name, days).map(|()| {
            println!("{}", dir.join("ca.crt").display());
        }),
        CertCommand::Node {
            dir,
            name,
            hosts,
            days,
        } => make_node(&dir, &name, &hosts, days).map(|path| println!("{}", path.display())),
        CertCommand::Revoke { dir, name } => revoke(&dir, &name).map(|revoked| {
            println!(
                "{} revoked ({revoked} certificate(s) in {})",
                dir.join(format!("{name}.crt")).display(),
                dir.join("ca.crl").display()
            );
        }),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("shoal cert: {error}");
            1
        }
    }
}

fn dev(dir: &Path, nodes: u32, hosts: &[String]) -> Result<(), String> {
    if !(1..=100).contains(&nodes) {
        return Err(format!("--nodes {nodes}: expected 1 to 100"));
    }
    make_ca(dir, "Shoal development CA", 3650)?;
    for node in 1..=nodes {
        make_node(dir, &format!("node{node}"), hosts, 397)?;
    }
    write_crl(dir, Vec::new())?;
    println!(
        "CA, revocation list and {nodes} node certificates in {}. Start node N with:\n  \
         shoal serve --tls-cert {d}/nodeN.crt --tls-key {d}/nodeN.key --tls-ca {d}/ca.crt \
         --tls-crl {d}/ca.crl …\n\
         Clients trust the CA with SHOAL_TLS_CA={d}/ca.crt (psql: sslrootcert={d}/ca.crt).\n\
         `shoal cert revoke --dir {d} --name nodeN` shuts a node's certificate out.",
        dir.display(),
        d = dir.display()
    );
    Ok(())
}

fn make_ca(dir: &Path, name: &str, days: u32) -> Result<(), String> {
    let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = distinguished_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, days);
    let certificate = params
        .self_signed(&key)
        .map_err(|e| format!("signing the CA certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write_new(&dir.join("ca.key"), &key.serialize_pem(), true)?;
    write_new(&dir.join("ca.crt"), &certificate.pem(), false)
}

fn make_node(dir: &Path, name: &str, hosts: &[String], days: u32) -> Result<PathBuf, String> {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        return Err(format!(
            "node name {name:?}: 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    let issuer = load_issuer(dir)?;
    let key = KeyPair::generate().map_err(|e| format!("generating the node key: {e}"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = distinguished_name(name);
    for host in hosts {
        let san = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                host.clone()
                    .try_into()
                    .map_err(|e| format!("--host {host:?}: {e}"))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    set_validity(&mut params, days);
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("signing the node certificate: {e}"))?;
    write_new(&dir.join(format!("{name}.key")), &key.serialize_pem(), true)?;
    let path = dir.join(format!("{name}.crt"));
    write_new(&path, &certificate.pem(), false)?;
    Ok(path)
}

/// Adds `name`'s certificate to the revocation list; returns how many it now holds.
fn revoke(dir: &Path, name: &str) -> Result<usize, String> {
    let cert_path = dir.join(format!("{name}.crt"));
    let serial = certificate_serial(&cert_path)?;
    let mut revoked = revoked_serials(&dir.join("ca.crl"))?;
    if !revoked.contains(&serial) {
        revoked.push(serial);
    }
    let count = revoked.len();
    write_crl(dir, revoked)?;
    Ok(count)
}

fn certificate_serial(path: &Path) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, certificate) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("{}: not a certificate: {e}", path.display()))?;
    Ok(certificate.raw_serial().to_vec())
}

/// The serial numbers already in the revocation list at `path` (none if it does not exist).
fn revoked_serials(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::pem::PemObject;
    if !path.exists() {
        return Ok(Vec::new());
    }
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_file(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, crl) = x509_parser::parse_x509_crl(&der)
        .map_err(|e| format!("{}: not a revocation list: {e}", path.display()))?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|revoked| revoked.raw_serial().to_vec())
        .collect())
}

/// Writes DIR/ca.crl, signed by DIR's CA, listing `serials` (temporary file, fsync, rename:
/// a node reloading it never reads half a list).
fn write_crl(dir: &Path, serials: Vec<Vec<u8>>) -> Result<(), String> {
    let issuer = load_issuer(dir)?;
    let now = time::OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(365),
        // Increasing with time, so a newer list always has the larger number.
        crl_number: rcgen::SerialNumber::from(now.unix_timestamp().max(0) as u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .into_iter()
            .map(|serial| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&serial),
                revocation_time: now,
                reason_code: Some(rcgen::RevocationReason::Superseded),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(&issuer)
        .and_then(|crl| crl.pem())
        .map_err(|e| format!("signing the revocation list: {e}"))?;
    let path = dir.join("ca.crl");
    let staged = dir.join("ca.crl.new");
    let _ = std::fs::remove_file(&staged);
    write_new(&staged, &crl, false)?;
    std::fs::rename(&staged, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// DIR's CA (ca.crt and ca.key), to sign certificates and revocation lists with.
fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, String> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let ca_key = KeyPair::from_pem(&read("ca.key")?).map_err(|e| format!("ca.key: {e}"))?;
    Issuer::from_ca_cert_pem(&read("ca.crt")?, ca_key).map_err(|e| format!("ca.crt: {e}"))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "Shoal");
    name
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A little slack for clocks that disagree.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Writes a file that must not exist yet (never overwrites a key); keys are readable by the
/// owner only.
fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; remove it or choose another --dir",
                path.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}
