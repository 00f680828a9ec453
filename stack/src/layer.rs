//! [`PackLayer`]: the tower layer a [`Pack`] makes.

use mcp_enterprise_audit::Audit;
use mcp_enterprise_core::metadata::ProtectedResourceMetadataService;
use mcp_enterprise_core::preauth::PreAuthLimit;
use mcp_enterprise_core::{Inspect, Negotiate, ProtectedResourceMetadataLayer};
use mcp_enterprise_integrity::Integrity;
use mcp_enterprise_policy::Policy;
use tower::util::Either;
use tower_layer::{Identity, Layer};

use crate::body::IntoPack;
use crate::builder::{Auth, Pack};

/// The authentication chain's service around `S`.
pub type AuthService<S> = <Auth as Layer<S>>::Service;

/// Integrity around `S`, when configured.
pub type IntegrityService<S> = Either<Integrity<S>, S>;

/// Inspection, negotiation, authentication, policy and integrity around `S`.
pub type CoreService<S> = Inspect<Negotiate<AuthService<Either<Policy<IntegrityService<S>>, IntegrityService<S>>>>>;

/// The metadata documents (when configured) around the core layers.
pub type DocumentsService<X> = Either<ProtectedResourceMetadataService<CoreService<X>>, CoreService<X>>;

/// The pre-authentication limit (when configured) around everything but audit.
pub type LimitedService<X> = Either<PreAuthLimit<DocumentsService<X>>, DocumentsService<X>>;

/// The whole pack around the inner service `S` (after the extra inner layer `X`).
pub type PackService<X> = Either<Audit<LimitedService<X>>, LimitedService<X>>;

/// Puts the whole pack around a service, outermost first:
///
/// 1. audit (records every refusal of the layers inside it);
/// 2. the pre-authentication limit per client address (a flood is refused before its body is
///    read or any credential is checked);
/// 3. the RFC 9728 protected resource metadata documents;
/// 4. inspection (one bounded parse, SEP-2243 checks) and 5. SEP-2133 negotiation;
/// 6. workload identity, 7. DPoP, 8. SSO (each passing what it does not handle only to an
///    authenticating layer inside it);
/// 9. policy (decides on the parsed call and the principal);
/// 10. integrity (list answers checked against the pinned definitions; inside policy, so it sees
///     the upstream's whole answer before policy removes what the caller may not see);
/// 11. the extra inner layer given with [`inner`](Self::inner) (e.g. rate limits, which key on the
///     principal and must not count refused calls);
/// 12. the service, its answers carried in the pack's one body type.
#[derive(Debug, Clone)]
pub struct PackLayer<L = Identity> {
    pack: Pack,
    inner: L,
    audited: bool,
}

impl PackLayer {
    pub(crate) fn new(pack: Pack) -> Self {
        Self { pack, inner: Identity::new(), audited: true }
    }
}

impl<L> PackLayer<L> {
    /// Puts `layer` innermost, between policy (integrity, when configured) and the service.
    pub fn inner<M>(self, layer: M) -> PackLayer<M> {
        PackLayer { pack: self.pack, inner: layer, audited: self.audited }
    }

    /// Leaves the audit layer out of the stack, for an embedder that puts the pack's
    /// [`audit`](Pack::audit) layer around more than this stack (the gateway puts it around its
    /// routes and `Host` check). The audit layer refuses to serve unless it is outermost.
    pub fn without_audit(mut self) -> Self {
        self.audited = false;
        self
    }
}

impl<S, L> Layer<S> for PackLayer<L>
where
    L: Layer<IntoPack<S>>,
{
    type Service = PackService<L::Service>;

    fn layer(&self, service: S) -> Self::Service {
        let pack = &self.pack;
        let inner = self.inner.layer(IntoPack::new(service));
        let inner = match &pack.integrity {
            Some(integrity) => Either::Left(integrity.layer(inner)),
            None => Either::Right(inner),
        };
        let inner = match &pack.policy {
            Some(policy) => Either::Left(policy.layer(inner)),
            None => Either::Right(inner),
        };
        let core = pack.inspect.layer(pack.negotiate.layer(pack.auth.layer(inner)));
        let core = match &pack.metadata {
            Some(metadata) => Either::Left(ProtectedResourceMetadataLayer::new(metadata.clone()).layer(core)),
            None => Either::Right(core),
        };
        let core = match &pack.pre_auth_limit {
            Some(limit) => Either::Left(limit.layer(core)),
            None => Either::Right(core),
        };
        match (&pack.audit, self.audited) {
            (Some(audit), true) => Either::Left(audit.layer(core)),
            _ => Either::Right(core),
        }
    }
}
