//! TLS for every listener and for calls between nodes (rustls, aws-lc-rs). One node
//! certificate and key serve HTTP, PostgreSQL and Raft; the cluster CA decides which nodes
//! may talk Raft (mutual TLS: the Raft port refuses a client without a certificate the CA
//! signed) and which servers a node trusts. The files are read again when they change, so a
//! renewed certificate is used by the next connection without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};

/// How often the certificate files are checked for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Certificate files larger than this are refused (a PEM chain is a few KiB).
const PEM_BYTES_MAX: u64 = 1024 * 1024;

/// The oldest TLS version a node accepts or speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

impl TlsVersion {
    pub fn parse(text: &str) -> Result<TlsVersion, String> {
        match text.trim() {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!("TLS version {other:?}: expected 1.2 or 1.3")),
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::V1_2 => rustls::ALL_VERSIONS,
            TlsVersion::V1_3 => &TLS13_ONLY,
        }
    }
}

/// Where a node's TLS material lives (`serve --tls-cert/--tls-key/--tls-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain of this node, its own certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// PEM certificate(s) of the cluster CA.
    pub ca: PathBuf,
    /// PEM certificate revocation list(s) of the CA: revoked node certificates are refused.
    pub crl: Option<PathBuf>,
    pub min_version: TlsVersion,
    /// Common names a certificate must carry for the Raft port to admit it (empty: any
    /// certificate of the CA), as rqlite's -node-verify-common-name checks.
    pub node_names: Vec<String>,
}

/// Who is on the other side of a listener: each gets its own server configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facing {
    /// HTTP API clients: no client certificate asked for.
    Clients,
    /// PostgreSQL clients (ALPN `postgresql`, for direct TLS negotiation).
    Postgres,
    /// Other nodes on the Raft port: a certificate signed by the cluster CA is required.
    Nodes,
}

/// The material loaded from the files, and the configurations built from it.
struct Material {
    /// Modification times and sizes of the files when they were read.
    stamp: Vec<(SystemTime, u64)>,
    key: Arc<CertifiedKey>,
    server_verifier: Arc<WebPkiServerVerifier>,
    clients: Arc<ServerConfig>,
    postgres: Arc<ServerConfig>,
    nodes: Arc<ServerConfig>,
}

/// A node's TLS state; cheap to share, reloaded in place.
pub struct TlsContext {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
    /// Bumped at every reload: connections made under older material close (gracefully),
    /// so a revoked or replaced certificate stops being trusted on open connections too.
    generation: tokio::sync::watch::Sender<u64>,
}

/// The subject common name of a DER certificate.
fn common_name(der: &[u8]) -> Result<String, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let name = certificate
        .subject()
        .iter_common_name()
        .next()
        .ok_or("the certificate has no common name")?
        .as_str()
        .map_err(|e| format!("unreadable common name: {e}"))?;
    Ok(name.to_string())
}

impl TlsContext {
    /// Whether a node presenting `der` (already checked against the CA) may use the Raft
    /// port: `Err` says why not.
    pub fn admits_node_certificate(&self, der: Option<&[u8]>) -> Result<(), String> {
        if self.settings.node_names.is_empty() {
            return Ok(());
        }
        let der = der.ok_or("no client certificate")?;
        let name = common_name(der)?;
        if self
            .settings
            .node_names
            .iter()
            .any(|allowed| allowed == &name)
        {
            Ok(())
        } else {
            Err(format!(
                "certificate common name {name:?} is not one of --tls-node-names"
            ))
        }
    }
}

impl fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Reads and checks the files; errors name the file and what is wrong with it.
    pub fn load(settings: TlsSettings) -> Result<Arc<TlsContext>, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let material = Material::load(&settings, &provider)?;
        Ok(Arc::new(TlsContext {
            settings,
            provider,
            current: RwLock::new(Arc::new(material)),
            generation: tokio::sync::watch::Sender::new(0),
        }))
    }

    fn material(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The server configuration for a listener facing `facing`, as of now.
    pub fn server_config(&self, facing: Facing) -> Arc<ServerConfig> {
        let material = self.material();
        match facing {
            Facing::Clients => material.clients.clone(),
            Facing::Postgres => material.postgres.clone(),
            Facing::Nodes => material.nodes.clone(),
        }
    }

    /// A client configuration for calls to other nodes: presents this node's certificate
    /// and trusts servers the cluster CA signed — both as of each new connection.
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, String> {
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(self.settings.min_version.versions())
            .map_err(|e| format!("TLS client configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentCa(self.clone())))
            .with_client_cert_resolver(Arc::new(CurrentKey(self.clone())));
        Ok(config)
    }

    /// Reads the files again if one changed; a broken new file keeps the old material (and
    /// says why), so a half-copied certificate never takes a node off the network.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let stamp = stamps(&self.settings)?;
        if stamp == self.material().stamp {
            return Ok(false);
        }
        let material = Material::load(&self.settings, &self.provider)?;
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(material),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(material),
        }
        self.generation.send_modify(|generation| *generation += 1);
        Ok(true)
    }

    /// Changes when the material is reloaded.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Checks the files every `RELOAD_CHECK_INTERVAL` until `shutdown`.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let context = self.clone();
        tokio::spawn(async move {
            let mut last_error = None;
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(RELOAD_CHECK_INTERVAL) => {}
                }
                match context.reload_if_changed() {
                    Ok(true) => {
                        last_error = None;
                        tracing::info!(cert = %context.settings.cert.display(), "TLS certificate reloaded");
                    }
                    Ok(false) => {}
                    Err(error) if last_error.as_ref() != Some(&error) => {
                        tracing::error!(%error, "TLS files changed but cannot be used; keeping the previous ones");
                        last_error = Some(error);
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

impl Material {
    fn load(settings: &TlsSettings, provider: &Arc<CryptoProvider>) -> Result<Material, String> {
        let stamp = stamps(settings)?;
        let chain = read_certificates(&settings.cert)?;
        let key = read_key(&settings.key)?;
        let key = Arc::new(
            CertifiedKey::from_der(chain.clone(), key, provider).map_err(|e| {
                format!(
                    "{} and {}: {e}",
                    settings.cert.display(),
                    settings.key.display()
                )
            })?,
        );
        let mut roots = RootCertStore::empty();
        for certificate in read_certificates(&settings.ca)? {
            roots
                .add(certificate)
                .map_err(|e| format!("{}: not a CA certificate: {e}", settings.ca.display()))?;
        }
        let roots = Arc::new(roots);
        let crls = match &settings.crl {
            Some(path) => read_crls(path)?,
            None => Vec::new(),
        };
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(crls.clone())
                .only_check_end_entity_revocation()
                .build()
                .map_err(|e| format!("{}: {e}", settings.ca.display()))?;
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(crls)
                .only_check_end_entity_revocation()
                .build()
                .map_err(|e| format!("{}: {e}", settings.ca.display()))?;
        // The node presents this certificate to the others: it must pass their check, or a
        // renewal signed by the wrong CA (or already expired) would cut the node off. (Not
        // the revocation list: a revoked node still applies the list it is revoked by.)
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("{}: {e}", settings.ca.display()))?
            .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
            .map_err(|e| {
                format!(
                    "{}: not usable with the CA in {}: {e}",
                    settings.cert.display(),
                    settings.ca.display()
                )
            })?;
        let versions = settings.min_version.versions();
        let base = || {
            ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .map_err(|e| format!("TLS server configuration: {e}"))
        };
        let single =
            |alpn: &[u8], verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>| {
                let builder = base()?;
                let builder = match verifier {
                    Some(verifier) => builder.with_client_cert_verifier(verifier),
                    None => builder.with_no_client_auth(),
                };
                let mut config = builder.with_cert_resolver(Arc::new(FixedKey(key.clone())));
                config.alpn_protocols = vec![alpn.to_vec()];
                Ok::<_, String>(Arc::new(config))
            };
        Ok(Material {
            stamp,
            clients: single(b"http/1.1", None)?,
            postgres: single(b"postgresql", None)?,
            nodes: single(b"http/1.1", Some(client_verifier))?,
            key,
            server_verifier,
        })
    }
}

/// Modification time and size of each file (a change to any triggers a reload).
fn stamps(settings: &TlsSettings) -> Result<Vec<(SystemTime, u64)>, String> {
    [&settings.cert, &settings.key, &settings.ca]
        .into_iter()
        .chain(settings.crl.as_ref())
        .map(|path| {
            let metadata =
                std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if metadata.len() > PEM_BYTES_MAX {
                return Err(format!(
                    "{}: {} bytes is too large for a PEM file",
                    path.display(),
                    metadata.len()
                ));
            }
            Ok((
                metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                metadata.len(),
            ))
        })
        .collect()
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certificates)
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if crls.is_empty() {
        return Err(format!("{}: no PEM revocation list in it", path.display()));
    }
    Ok(crls)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", path.display()))
}

/// Serves the certificate loaded with a configuration.
#[derive(Debug)]
struct FixedKey(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedKey {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Presents the node's current certificate when another node asks for one.
#[derive(Debug)]
struct CurrentKey(Arc<TlsContext>);

impl ResolvesClientCert for CurrentKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies servers against the cluster CA as currently loaded (rustls's WebPKI verifier
/// does the work; this only lets the CA change without rebuilding the HTTP client).
#[derive(Debug)]
struct CurrentCa(Arc<TlsContext>);

impl ServerCertVerifier for CurrentCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.material().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.material().server_verifier.supported_verify_schemes()
    }
}

/// The CA client commands (`shoal shell`, `cluster`, `user`, `backup`, `bench`) trust for
/// `https://` URLs: the file named by `SHOAL_TLS_CA` (the same variable `serve` reads).
pub const CLIENT_CA_ENV: &str = "SHOAL_TLS_CA";

/// A client configuration trusting the CA in `SHOAL_TLS_CA`, if it is set.
pub fn client_config_from_env() -> Result<Option<ClientConfig>, String> {
    let Some(path) = std::env::var_os(CLIENT_CA_ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(&path)? {
        roots
            .add(certificate)
            .map_err(|e| format!("{CLIENT_CA_ENV}={}: {e}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(config))
}

/// Makes rustls's aws-lc-rs provider the process default (for HTTPS clients built without
/// an explicit configuration); call once at start.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
