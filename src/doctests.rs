//! The README and every chapter of `docs/` as doc-tests: `cargo test`
//! compiles and runs each of their Rust blocks, so the examples in the
//! manual cannot rot. Blocks in other languages are marked (`sh`, `text`,
//! `yaml`, `ini`, ...) and not run; a bare fence would be compiled as Rust,
//! so the chapters without Rust blocks are here too, and one fails the
//! doc-tests as soon as it has a block that is not marked.

/// The README: what wharf is, set-up, a tour, the map of the manual.
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// `docs/installing.md`.
#[doc = include_str!("../docs/installing.md")]
pub struct InstallingDoctests;

/// `docs/protocol.md`: `wharf::Client` against a server in the same process.
#[doc = include_str!("../docs/protocol.md")]
pub struct ProtocolDoctests;

/// `docs/operating.md`.
#[doc = include_str!("../docs/operating.md")]
pub struct OperatingDoctests;

/// `docs/sizing.md`.
#[doc = include_str!("../docs/sizing.md")]
pub struct SizingDoctests;

/// `docs/embedding.md`: a server in a program, a closure service, sessions.
#[doc = include_str!("../docs/embedding.md")]
pub struct EmbeddingDoctests;

/// `docs/performance.md`.
#[doc = include_str!("../docs/performance.md")]
pub struct PerformanceDoctests;

/// `docs/reliability.md`.
#[doc = include_str!("../docs/reliability.md")]
pub struct ReliabilityDoctests;

/// `docs/tls.md`.
#[doc = include_str!("../docs/tls.md")]
pub struct TlsDoctests;

/// `docs/design.md`.
#[doc = include_str!("../docs/design.md")]
pub struct DesignDoctests;
