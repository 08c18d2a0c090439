//! First-order energy, latency and area of the crossbar per inference, and the cost of
//! programming it. First order means: every constant is one number from a preset (with its
//! source), no wire parasitics, no buffers, no interconnect, no leakage, no digital
//! accumulation or activation hardware; crossbar read energy is V²·G·t per device with every
//! row driven at the full read voltage (an upper bound on the array energy); converter
//! energy is a Walden figure of merit × 2^bits per conversion (Walden, IEEE JSAC 17(4),
//! 1999; values from Murmann's ADC Performance Survey). It ranks designs, it does not
//! predict a chip. Structure after NeuroSim (Chen, Peng & Yu, IEEE TCAD 37(12), 2018; Peng
//! et al., DNN+NeuroSim, IEDM 2019): tiles of `tile_rows × tile_cols`, one ADC shared by
//! `columns_per_adc` columns, one DAC per row.
//!
//! Per layer and input vector (one output position of one image):
//!   crossbar  E = V_read² · t_read · Σ_devices G
//!   ADC       conversions = row_tiles × c_out,            E = n · FoM_ADC · 2^b_ADC
//!   DAC       conversions = rows × col_tiles,             E = n · FoM_DAC · 2^b_DAC
//!   latency   t_read + columns_per_adc · t_conversion (tiles in parallel)
//! multiplied by the layer's output positions per image; layers run one after another.
//! Area = tiles × (2·tile_rows·tile_cols cells + ⌈tile_cols / columns_per_adc⌉ ADCs +
//! tile_rows DACs). Programming: pulses × V_write²·G_max·t_write plus verify reads ×
//! (V_read²·G_max·t_read + one ADC conversion); time = (pulses·t_write + reads ·
//! (t_read + t_conversion)) / devices programmed in parallel.
use super::path::AnalogPath;
use super::tiling::row_tiles;
use super::writeverify::ProgramStats;
use crate::config::{AnalogConfig, Converter};
use crate::error::{invalid, GqcimError, Result};
use crate::nets::layers::{LayerOp, LayerSpec};
use crate::nets::Network;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The built-in preset (the same file as `configs/cost/neurosim.yaml`).
pub const DEFAULT_PRESET: &str = include_str!("../../configs/cost/neurosim.yaml");
const DEFAULT_PRESET_NAME: &str = "configs/cost/neurosim.yaml (built in)";

/// One constant of the preset and where it comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    pub value: f64,
    pub source: String,
}

/// Every constant of the cost model (SI units, as the key names say).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostPreset {
    pub description: String,
    pub read_voltage_v: Constant,
    pub read_pulse_s: Constant,
    pub write_voltage_v: Constant,
    pub write_pulse_s: Constant,
    pub adc_fom_j_per_step: Constant,
    pub adc_conversion_s: Constant,
    pub columns_per_adc: Constant,
    pub adc_area_m2_per_level: Constant,
    pub dac_fom_j_per_step: Constant,
    pub dac_area_m2: Constant,
    pub adc_bits_if_ideal: Constant,
    pub dac_bits_if_ideal: Constant,
    pub cell_area_f2: Constant,
    pub feature_size_m: Constant,
    pub program_parallel_devices: Constant,
}

impl CostPreset {
    fn entries(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("read_voltage_v", self.read_voltage_v.value),
            ("read_pulse_s", self.read_pulse_s.value),
            ("write_voltage_v", self.write_voltage_v.value),
            ("write_pulse_s", self.write_pulse_s.value),
            ("adc_fom_j_per_step", self.adc_fom_j_per_step.value),
            ("adc_conversion_s", self.adc_conversion_s.value),
            ("columns_per_adc", self.columns_per_adc.value),
            ("adc_area_m2_per_level", self.adc_area_m2_per_level.value),
            ("dac_fom_j_per_step", self.dac_fom_j_per_step.value),
            ("dac_area_m2", self.dac_area_m2.value),
            ("adc_bits_if_ideal", self.adc_bits_if_ideal.value),
            ("dac_bits_if_ideal", self.dac_bits_if_ideal.value),
            ("cell_area_f2", self.cell_area_f2.value),
            ("feature_size_m", self.feature_size_m.value),
            ("program_parallel_devices", self.program_parallel_devices.value),
        ]
    }

    /// Every value finite and ≥ 0 (energies, times, areas cannot be negative); counts and
    /// bit widths whole numbers ≥ 1.
    pub fn validate(&self, origin: &str) -> Result<()> {
        for (k, v) in self.entries() {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(
                    format!("{origin}: {k}"),
                    format!("must be finite and >= 0, got {v}"),
                ));
            }
        }
        for (k, v) in [
            ("columns_per_adc", self.columns_per_adc.value),
            ("adc_bits_if_ideal", self.adc_bits_if_ideal.value),
            ("dac_bits_if_ideal", self.dac_bits_if_ideal.value),
            ("program_parallel_devices", self.program_parallel_devices.value),
        ] {
            if v < 1.0 || v.fract() != 0.0 || v > 1e9 {
                return Err(invalid(
                    format!("{origin}: {k}"),
                    format!("must be a whole number >= 1, got {v}"),
                ));
            }
        }
        for (k, v) in [
            ("adc_bits_if_ideal", self.adc_bits_if_ideal.value),
            ("dac_bits_if_ideal", self.dac_bits_if_ideal.value),
        ] {
            if v > 24.0 {
                return Err(invalid(format!("{origin}: {k}"), format!("at most 24 bits, got {v}")));
            }
        }
        Ok(())
    }

    /// Energy of one conversion of a `bits`-bit converter with Walden FoM `fom` (J/step).
    pub fn walden(fom: f64, bits: u32) -> f64 {
        fom * 2f64.powi(bits as i32)
    }
}

/// `cost` section of a config: the preset file (default: the built-in NeuroSim-based
/// preset), per-constant overrides, and the ADC bit widths of the energy-by-bits table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CostSection {
    pub preset: Option<PathBuf>,
    /// Replaces the `value` of preset constants by name, e.g. {adc_fom_j_per_step: 5e-15}.
    pub overrides: BTreeMap<String, f64>,
    /// ADC resolutions at which the inference energy per image is also reported.
    pub adc_bits: Vec<u32>,
}

impl Default for CostSection {
    fn default() -> Self {
        CostSection { preset: None, overrides: BTreeMap::new(), adc_bits: vec![4, 6, 8] }
    }
}

impl CostSection {
    /// Reads the preset, applies the overrides, validates; errors name the file and key.
    pub fn load_preset(&self) -> Result<CostPreset> {
        let (text, origin) = match &self.preset {
            None => (DEFAULT_PRESET.to_string(), DEFAULT_PRESET_NAME.to_string()),
            Some(p) => (
                std::fs::read_to_string(p).map_err(|e| GqcimError::Config {
                    path: p.display().to_string(),
                    msg: format!("cannot read cost preset (cost.preset): {e}"),
                })?,
                p.display().to_string(),
            ),
        };
        parse_preset(&text, &origin, &self.overrides)
    }

    pub fn validate(&self, field: &str) -> Result<()> {
        for b in &self.adc_bits {
            if !(1..=24).contains(b) {
                return Err(invalid(
                    format!("{field}.adc_bits"),
                    format!("expected 1..=24, got {b}"),
                ));
            }
        }
        self.load_preset().map(|_| ())
    }
}

/// Parses a preset's text and applies `overrides` (unknown keys are named errors).
pub fn parse_preset(
    text: &str,
    origin: &str,
    overrides: &BTreeMap<String, f64>,
) -> Result<CostPreset> {
    let base: CostPreset = crate::config::parse_yaml(text, origin, &[])?;
    let allowed: Vec<&str> = base.entries().iter().map(|(k, _)| *k).collect();
    let mut sets = Vec::new();
    for (k, v) in overrides {
        if !allowed.contains(&k.as_str()) {
            let hint = crate::config::did_you_mean(k, &allowed)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(invalid(
                format!("cost.overrides.{k}"),
                format!("unknown preset key `{k}`{hint} (allowed: {})", allowed.join(", ")),
            ));
        }
        sets.push(format!("{k}.value={v:e}"));
    }
    let preset: CostPreset = crate::config::parse_yaml(text, origin, &sets)?;
    preset.validate(origin)?;
    Ok(preset)
}

/// What the cost model needs to know of one crossbar layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerGeom {
    pub name: String,
    /// Input channels per group (a linear layer: its inputs).
    pub c_in_per_group: i64,
    /// Crossbar rows per input channel (k² for a conv, 1 for a linear layer).
    pub taps: i64,
    pub c_out: i64,
    pub groups: i64,
    /// Output positions per image (H'·W' for a conv, 1 for a linear layer).
    pub positions: i64,
    /// Σ (G+ + G−) over the layer's devices, µS.
    pub g_sum_us: f64,
}

/// First-order cost of one layer, per image.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LayerCost {
    pub tiles: i64,
    pub row_tiles: i64,
    pub adc_conversions: f64,
    pub dac_conversions: f64,
    pub crossbar_energy_j: f64,
    pub adc_energy_j: f64,
    pub dac_energy_j: f64,
    pub latency_s: f64,
    pub area_m2: f64,
}

impl LayerCost {
    pub fn energy_j(&self) -> f64 {
        self.crossbar_energy_j + self.adc_energy_j + self.dac_energy_j
    }

    fn add(&mut self, o: &LayerCost) {
        self.tiles += o.tiles;
        self.row_tiles += o.row_tiles;
        self.adc_conversions += o.adc_conversions;
        self.dac_conversions += o.dac_conversions;
        self.crossbar_energy_j += o.crossbar_energy_j;
        self.adc_energy_j += o.adc_energy_j;
        self.dac_energy_j += o.dac_energy_j;
        self.latency_s += o.latency_s;
        self.area_m2 += o.area_m2;
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Converter resolutions in use: the configured ones, or the preset's for ideal converters.
pub fn converter_bits(cfg: &AnalogConfig, p: &CostPreset) -> (u32, u32) {
    let bits = |c: &Converter, dflt: f64| match c {
        Converter::Uniform { bits, .. } => *bits,
        Converter::Ideal => dflt as u32,
    };
    (bits(&cfg.adc, p.adc_bits_if_ideal.value), bits(&cfg.dac, p.dac_bits_if_ideal.value))
}

/// The cost of one layer per image, tiled as `periphery::forward_with_periphery` tiles it
/// (`tiling.rs`, `analog.tile_split`): by whole channels (the default), ⌈channels /
/// ⌊tile_rows / taps⌋⌉ row tiles per group; balanced, ⌈rows / tile_rows⌉.
pub fn layer_cost(
    g: &LayerGeom,
    cfg: &AnalogConfig,
    p: &CostPreset,
    adc_bits: u32,
    dac_bits: u32,
) -> LayerCost {
    let row_tiles_g =
        row_tiles(g.c_in_per_group * g.taps, g.taps, cfg.tile_rows, cfg.tile_split).len() as i64;
    let c_out_g = ceil_div(g.c_out, g.groups);
    let col_tiles_g = ceil_div(c_out_g, cfg.tile_cols);
    let rows_g = g.c_in_per_group * g.taps;
    let tiles = g.groups * row_tiles_g * col_tiles_g;
    let pos = g.positions as f64;
    let adc_conv = (row_tiles_g * g.c_out) as f64 * pos;
    let dac_conv = (g.groups * rows_g * col_tiles_g) as f64 * pos;
    let v = p.read_voltage_v.value;
    let crossbar = v * v * p.read_pulse_s.value * g.g_sum_us * 1e-6 * pos;
    let mux = p.columns_per_adc.value;
    let f2 = p.feature_size_m.value * p.feature_size_m.value;
    let adcs_per_tile = (cfg.tile_cols as f64 / mux).ceil();
    let tile_area = 2.0 * (cfg.tile_rows * cfg.tile_cols) as f64 * p.cell_area_f2.value * f2
        + adcs_per_tile * p.adc_area_m2_per_level.value * 2f64.powi(adc_bits as i32)
        + cfg.tile_rows as f64 * p.dac_area_m2.value;
    LayerCost {
        tiles,
        row_tiles: g.groups * row_tiles_g,
        adc_conversions: adc_conv,
        dac_conversions: dac_conv,
        crossbar_energy_j: crossbar,
        adc_energy_j: adc_conv * CostPreset::walden(p.adc_fom_j_per_step.value, adc_bits),
        dac_energy_j: dac_conv * CostPreset::walden(p.dac_fom_j_per_step.value, dac_bits),
        latency_s: pos * (p.read_pulse_s.value + mux * p.adc_conversion_s.value),
        area_m2: tiles as f64 * tile_area,
    }
}

/// Sum of `layer_cost` over a network's layers.
pub fn network_cost(
    geoms: &[LayerGeom],
    cfg: &AnalogConfig,
    p: &CostPreset,
    adc_bits: u32,
    dac_bits: u32,
) -> LayerCost {
    let mut total = LayerCost::default();
    for g in geoms {
        total.add(&layer_cost(g, cfg, p, adc_bits, dac_bits));
    }
    total
}

/// Programming totals of a network (one programming of every device).
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct ProgramCost {
    pub pulses: f64,
    pub verify_reads: f64,
    pub energy_j: f64,
    pub time_s: f64,
}

pub fn program_cost(
    s: &ProgramStats,
    cfg: &AnalogConfig,
    p: &CostPreset,
    adc_bits: u32,
) -> ProgramCost {
    let g_max = cfg.g_max * 1e-6;
    let (vw, vr) = (p.write_voltage_v.value, p.read_voltage_v.value);
    let e_pulse = vw * vw * g_max * p.write_pulse_s.value;
    let e_read = vr * vr * g_max * p.read_pulse_s.value
        + CostPreset::walden(p.adc_fom_j_per_step.value, adc_bits);
    let t = s.pulses * p.write_pulse_s.value
        + s.verify_reads * (p.read_pulse_s.value + p.adc_conversion_s.value);
    ProgramCost {
        pulses: s.pulses,
        verify_reads: s.verify_reads,
        energy_j: s.pulses * e_pulse + s.verify_reads * e_read,
        time_s: t / p.program_parallel_devices.value,
    }
}

/// The geometry of one crossbar layer; `path.positions` must come from a forward pass.
pub fn layer_geometry(spec: &LayerSpec, path: &AnalogPath) -> Result<LayerGeom> {
    let s = spec.weight.size();
    let (taps, groups) = match spec.op {
        LayerOp::Conv2d { groups, .. } => (s[2..].iter().product::<i64>().max(1), groups),
        LayerOp::Linear => (1, 1),
    };
    if path.positions == 0 {
        return Err(invalid(
            "cost",
            format!("layer `{}` has not run a forward pass on the crossbar yet", spec.name),
        ));
    }
    Ok(LayerGeom {
        name: spec.name.clone(),
        c_in_per_group: s[1],
        taps,
        c_out: s[0],
        groups,
        positions: path.positions,
        g_sum_us: path.conductance_sum(),
    })
}

/// The geometry of every crossbar layer of a network after at least one forward pass (the
/// output positions are recorded by the forward pass) and one programming.
pub fn network_geometry(net: &Network) -> Result<Vec<LayerGeom>> {
    let mut out = Vec::new();
    for l in net.layers.layers() {
        let got = l.with_path(|p| {
            p.as_any_mut().downcast_mut::<AnalogPath>().map(|a| layer_geometry(&l.spec, a))
        });
        match got {
            Some(g) => out.push(g?),
            None => {
                return Err(invalid(
                    "cost",
                    format!("layer `{}` is not on the crossbar (deploy_analog first)", l.spec.name),
                ))
            }
        }
    }
    Ok(out)
}

/// Sum of the programming statistics of every crossbar layer (this trial).
pub fn network_program_stats(net: &Network) -> ProgramStats {
    let mut total = ProgramStats::default();
    for l in net.layers.layers() {
        l.with_path(|p| {
            if let Some(a) = p.as_any_mut().downcast_mut::<AnalogPath>() {
                total.add(&a.program_stats);
            }
        });
    }
    total
}
