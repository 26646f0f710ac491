//! The control plane's layer of config: the sections it owns (`services`, `routes` and
//! `inbound.ports`), laid over the proxy's own file in place of the file's.

use crate::schema;

/// The sections the control plane owns, as one snapshot of them.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// Snapshot version.
    pub version: u64,
    /// The control plane epoch the version belongs to.
    pub epoch: u64,
    /// `services`.
    pub services: Vec<schema::Service>,
    /// `routes`.
    pub routes: Vec<schema::Route>,
    /// `inbound.ports`.
    pub ports: Vec<schema::InboundPort>,
}

impl Overlay {
    /// The file's config with the control plane's sections in place of its own.
    pub fn apply_to(&self, mut file: schema::File) -> schema::File {
        file.services = self.services.clone();
        file.routes = self.routes.clone();
        file.inbound.ports = self.ports.clone();
        file
    }
}
