//! The kernel's front door for one request, as `nmk run` uses it: the ledger and memory of the
//! kernel home, the router with the built-ins and the learned primitives that pass their
//! re-check, and the host cost sensor. Owns only the wiring; every decision is the kernel's.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use nmk_det::sandbox::{CallLimits, Sandbox};
use nmk_kernel::k_policy::{CostModel, CostSource, QueueDepth};
use nmk_kernel::learn::{PrimitiveRegistry, Recheck};
use nmk_kernel::ledger::Ledger;
use nmk_kernel::memory::{MemoryConfig, MemoryStore};
use nmk_kernel::router::{
    HeadPolicy, HeadReading, HeadRouted, LearnedRoute, MemoryAccess, RouteEnv, Routed, Router,
    RouterConfig, RouterError,
};
use nmk_kernel::store::{Durability, database_path};

use crate::sensors::{GpuProbe, SysinfoSensor};

/// What one request is routed with.
pub struct Front {
    /// The kernel's ledger.
    pub ledger: Ledger,
    /// The memory store, or why it could not be opened.
    pub memory: Result<MemoryStore, String>,
    /// The route registry.
    pub router: Router,
    /// Learned primitives refused at their re-check (not routed), with the reason.
    pub refused: Vec<(String, String)>,
    /// Kept alive while learned routes may call it.
    _sandbox: Option<Arc<Sandbox>>,
}

impl Front {
    /// Opens the ledger and memory under `home` and builds the router: built-ins, then every
    /// learned primitive whose code hash and sealed gate pass re-check (a sandbox pool is
    /// started only when there is one). A learned primitive whose signature no extraction
    /// reads is left out, with the reason.
    pub fn open(home: &Path) -> Result<Front> {
        let db = database_path(home);
        let ledger = Ledger::open(&db, Durability::Process)
            .with_context(|| format!("opening {}", db.display()))?;
        let memory = MemoryStore::open(&db, MemoryConfig::default(), ledger.clone())
            .map_err(|e| e.to_string());
        let (router, refused, sandbox) = learned_router(&db, &ledger)?;
        Ok(Front {
            ledger,
            memory,
            router,
            refused,
            _sandbox: sandbox,
        })
    }

    /// Rebuilds the router from the home's learned primitives as they are now (after one was
    /// admitted); the ledger and memory handles stay.
    pub fn reload_learned(&mut self, home: &Path) -> Result<()> {
        let (router, refused, sandbox) = learned_router(&database_path(home), &self.ledger)?;
        self.router = router;
        self.refused = refused;
        self._sandbox = sandbox;
        Ok(())
    }

    /// Routes `request` (consulting memory first); `force_model_lane` skips the primitives.
    pub fn route(&mut self, request: &str, force_model_lane: bool) -> Result<Routed> {
        self.with_env(force_model_lane, |router, env| router.handle(request, env))
    }

    /// Routes `request` with the entry-trap head's reading: the kernel disposes of the
    /// proposal (threshold 0.5, `trap:<entry>` granted for every route, lexical fallback).
    pub fn route_with_head(&mut self, request: &str, reading: &HeadReading) -> Result<HeadRouted> {
        let policy = HeadPolicy::granting_all(&self.router);
        self.with_env(false, |router, env| {
            router.handle_with_head(request, env, Some(reading), &policy)
        })
    }

    fn with_env<T>(
        &mut self,
        force_model_lane: bool,
        handle: impl FnOnce(&Router, RouteEnv<'_>) -> Result<T, RouterError>,
    ) -> Result<T> {
        let sensor = SysinfoSensor::new(GpuProbe::CpuOnly);
        let model = CostModel::default();
        // A sensor that cannot start is no reading: cost 1.0 (fail closed).
        let cost = match &sensor {
            Ok(s) => CostSource::Sensor {
                sensor: s,
                model: &model,
                // This process serves one request: nothing else is queued behind it.
                queue: Some(QueueDepth { ready: 0, held: 0 }),
            },
            Err(_) => CostSource::Unknown,
        };
        let memory = match &mut self.memory {
            Ok(store) => MemoryAccess::Open(store),
            Err(why) => MemoryAccess::Unavailable(why.clone()),
        };
        let logical_time = self.ledger.len()?;
        Ok(handle(
            &self.router,
            RouteEnv {
                ledger: &self.ledger,
                memory,
                cost,
                force_model_lane,
                logical_time,
            },
        )?)
    }
}

/// A router, the learned primitives it left out (with why), and the sandbox pool its learned
/// routes call.
type BuiltRouter = (Router, Vec<(String, String)>, Option<Arc<Sandbox>>);

/// The built-ins, then every learned primitive in `db` whose code hash and sealed gate pass
/// re-check (a sandbox pool is started only when there is one); the refused ones with why.
fn learned_router(db: &Path, ledger: &Ledger) -> Result<BuiltRouter> {
    let mut router = Router::with_builtins(RouterConfig::default());
    let mut refused = Vec::new();
    let mut registry = PrimitiveRegistry::open(db, Durability::Process)
        .with_context(|| format!("opening {}", db.display()))?;
    let report = registry.reload(ledger, Recheck::Hashes, None)?;
    for r in report.refused {
        refused.push((r.entry, r.reason));
    }
    let mut sandbox = None;
    if !report.usable.is_empty() {
        let pool = Arc::new(crate::sandbox::start()?);
        let runner = Arc::new(nmk_kernel::router::SandboxRunner::new(
            pool.clone(),
            CallLimits::default(),
        ));
        for p in &report.usable {
            match LearnedRoute::new(p, runner.clone()) {
                Ok(route) => router.register(Box::new(route)),
                Err(why) => refused.push((p.record().entry.clone(), why)),
            }
        }
        sandbox = Some(pool);
    }
    Ok((router, refused, sandbox))
}
