//! Host load probes for the kernel's cost model: [`SysinfoSensor`] implements
//! [`nmk_kernel::k_policy::LoadSensor`] on the `sysinfo` crate, so the trusted kernel needs no
//! system-information dependency.
//!
//! Owns reading the host only (load average, CPU count, memory use, GPU utilisation); it never
//! decides k. It reports what it could not read as missing (`None` / [`GpuReading::Unknown`]),
//! which the kernel counts as full cost: a broken probe never reads as an idle machine.

// Not yet wired into a command: the scheduler's use of dynamic k lands separately.
#![cfg_attr(not(test), allow(dead_code))]

use std::sync::Mutex;

use nmk_kernel::k_policy::{GpuReading, HostLoad, LoadSensor, SensorError};
use sysinfo::{Gpus, System};

/// Which GPUs count as load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuProbe {
    /// Probe every GPU `sysinfo` finds (DRM, NVML, Vulkan on Linux; Metal on macOS; DXGI on
    /// Windows). No GPU → [`GpuReading::NoGpu`]; GPUs present but none reports utilisation →
    /// [`GpuReading::Unknown`] (counted as saturated).
    Probe,
    /// The runtime computes only on the CPU, so no GPU is a resource it competes for: report
    /// [`GpuReading::NoGpu`] without probing.
    CpuOnly,
}

/// Host load through `sysinfo`.
pub struct SysinfoSensor {
    system: Mutex<System>,
    gpu: GpuProbe,
}

impl std::fmt::Debug for SysinfoSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SysinfoSensor")
            .field("gpu", &self.gpu)
            .finish_non_exhaustive()
    }
}

impl SysinfoSensor {
    /// A sensor; fails if `sysinfo` cannot initialise on this platform.
    pub fn new(gpu: GpuProbe) -> Result<SysinfoSensor, SensorError> {
        let system = System::new().map_err(|e| SensorError(format!("sysinfo: {e}")))?;
        Ok(SysinfoSensor {
            system: Mutex::new(system),
            gpu,
        })
    }

    fn gpu_reading(&self) -> GpuReading {
        match self.gpu {
            GpuProbe::CpuOnly => GpuReading::NoGpu,
            GpuProbe::Probe => match Gpus::new_with_refreshed_list() {
                Err(_) => GpuReading::Unknown,
                Ok(gpus) if gpus.is_empty() => GpuReading::NoGpu,
                Ok(gpus) => gpus
                    .iter()
                    .filter_map(|g| g.usage())
                    .map(f64::from)
                    .filter(|u| u.is_finite())
                    .reduce(f64::max)
                    .map_or(GpuReading::Unknown, GpuReading::Util),
            },
        }
    }
}

impl LoadSensor for SysinfoSensor {
    fn read(&self) -> Result<HostLoad, SensorError> {
        let mut system = self
            .system
            .lock()
            .map_err(|_| SensorError("sysinfo state poisoned".into()))?;
        system.refresh_memory();
        let total = system.total_memory();
        let memory_pct = (total > 0).then(|| system.used_memory() as f64 / total as f64 * 100.0);
        drop(system);
        let load1 = System::load_average()
            .ok()
            .map(|l| l.one)
            .filter(|l| l.is_finite() && *l >= 0.0);
        let cpu_count = std::thread::available_parallelism()
            .ok()
            .and_then(|n| u32::try_from(n.get()).ok());
        Ok(HostLoad {
            load1,
            cpu_count,
            memory_pct,
            gpu: self.gpu_reading(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use nmk_kernel::k_policy::{CostModel, LoadSnapshot, QueueDepth};

    use super::*;

    #[test]
    fn reads_sane_values_on_this_machine() {
        let sensor = SysinfoSensor::new(GpuProbe::Probe).unwrap();
        let host = sensor.read().unwrap();
        let cpus = host.cpu_count.expect("cpu count");
        assert!((1..=4096).contains(&cpus), "{cpus}");
        let load = host.load1.expect("load average (Linux /proc/loadavg)");
        assert!((0.0..10_000.0).contains(&load), "{load}");
        let mem = host.memory_pct.expect("memory");
        assert!(mem > 0.0 && mem <= 100.0, "{mem}");
        match host.gpu {
            GpuReading::NoGpu | GpuReading::Unknown => {}
            GpuReading::Util(u) => assert!((0.0..=100.0).contains(&u), "{u}"),
        }
        // The kernel's model turns it into a cost in [0, 1] with no missing host probe (the
        // GPU may be unreadable on some machines; then it alone is counted as saturated).
        let reading = CostModel::default().cost(&LoadSnapshot {
            host,
            queue: Some(QueueDepth::default()),
        });
        assert!((0.0..=1.0).contains(&reading.cost));
        assert!(
            reading.failures.iter().all(|f| f.starts_with("gpu")),
            "{:?}",
            reading.failures
        );
    }

    #[test]
    fn cpu_only_reports_no_gpu() {
        let sensor = SysinfoSensor::new(GpuProbe::CpuOnly).unwrap();
        assert_eq!(sensor.read().unwrap().gpu, GpuReading::NoGpu);
    }
}
