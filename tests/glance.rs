//! Issue 20, "8-level vs 32-bit at a glance": a tiny segmentation grid read back with
//! TensorBoard's EventAccumulator (fp32 and N = 8 share a tag in two sub-runs, gap scalars,
//! the text table, fine-tuning loss per step, deployed-weight histograms; merge rewrites the
//! same bytes; side-by-side samples), the chart layout (legend beside, never over, the
//! data), `gqcim plot`, the detection and segmentation pictures, and `make tensorboard`
//! binding to localhost.
mod common;
use common::*;
use gqcim::config::{QuantMethod, TuneMode};
use gqcim::data::scenes::SceneConfig;
use gqcim::data::Dataset;
use gqcim::glance::charts::write_charts;
use gqcim::glance::plot::SIZE;
use gqcim::glance::points::GridPoint;
use gqcim::tasks::segment::{build_network, SegmentConfig, SegmentData, SegmentHarness};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// Items: class k is a filled rectangle of intensity 100 + 15k.
fn items(classes: &[i64]) -> Dataset {
    let n = classes.len() as i64;
    let img = Tensor::zeros([n, 1, 28, 28], (Kind::Uint8, Device::Cpu));
    for (i, k) in classes.iter().enumerate() {
        let _ = img.get(i as i64).narrow(1, 6, 16).narrow(2, 4, 20).fill_(100 + 15 * k);
    }
    Dataset { images: img, labels: Tensor::from_slice(classes), num_classes: 10 }
}

/// 32x32 scenes, a few of them: the grid takes seconds.
fn tiny_config() -> SegmentConfig {
    let mut cfg =
        SegmentConfig { device: gqcim::config::DeviceChoice::Cpu, ..SegmentConfig::default() };
    cfg.data.scenes = SceneConfig {
        canvas: 32,
        min_items: 1,
        max_items: 3,
        min_size: 12,
        max_size: 24,
        train_scenes: 8,
        test_scenes: 4,
        ..SceneConfig::default()
    };
    cfg.train.batch_size = 4;
    cfg.eval.batch_size = 4;
    cfg.eval.sample_images = 1;
    cfg.finetune.epochs = 1.0;
    cfg.finetune.batch_size = 4;
    cfg.analog.trials = 3;
    cfg.compare.methods = vec![QuantMethod::Gq];
    cfg.compare.levels = vec![8];
    cfg.compare.modes = vec![TuneMode::Ptq, TuneMode::Qat];
    cfg.compare.sigmas = vec![0.0, 0.05];
    cfg
}

fn read_runs(dir: &std::path::Path) -> Value {
    let out = std::process::Command::new(python())
        .arg(repo_root().join("tests/python/read_tensorboard_runs.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn series(tb: &Value, run: &str, kind: &str, tag: &str) -> Vec<(i64, f64)> {
    let s = tb[run][kind][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} `{tag}` in run `{run}`; runs: {:?}", keys(tb)));
    s.iter().map(|e| (e[0].as_i64().unwrap(), e[1].as_f64().unwrap_or(f64::NAN))).collect()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// The cell mean of (method, mode, sigma) in results.json, in %.
fn cell_pct(res: &Value, method: &str, mode: &str, sigma: f64) -> f64 {
    let c = res["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["method"] == method && c["mode"] == mode && c["sigma"].as_f64() == Some(sigma))
        .unwrap_or_else(|| panic!("no cell {method} {mode} {sigma}"));
    100.0 * c["stats"]["mean"].as_f64().unwrap()
}

/// Every file under `dir` (relative path -> bytes), recursively.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(|e| e.unwrap()) {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn tiny_grid_puts_fp32_and_n8_on_one_tensorboard_card() {
    let _rng = rng_lock();
    tch::set_num_threads(1);
    let cfg = tiny_config();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("net.safetensors");
    let trained = build_network(&cfg, Device::Cpu).unwrap();
    gqcim::checkpoint::save_varstore(&trained.vs, &ckpt).unwrap();
    let all: Vec<i64> = (0..10).collect();
    let data = SegmentData::from_items(
        items(&all),
        &items(&all),
        &cfg.data.scenes,
        1,
        2,
        false,
        Device::Cpu,
    );
    let harness = SegmentHarness::from_data(&cfg, data);
    let run_path = dir.path().join("grid");
    let place = gqcim::run::RunPlace { out_dir: dir.path(), task: "segment", name: &None };
    let run =
        gqcim::run::RunDir::create_at(place, "compare", &ckpt, Some(&run_path), "x: 1").unwrap();
    let mut base = cfg.base_config();
    base.out_dir = dir.path().to_path_buf(); // the network cache goes under out_dir
    let res =
        gqcim::grid::run_grid(&base, &harness, &ckpt, Device::Cpu, run, std::time::Instant::now())
            .unwrap();
    let seed = base.seed; // the one fine-tuning seed (compare.seeds is empty)
    let tb = read_runs(&run_path);
    let tag = "segment/miou_vs_sigma/N8";
    // fp32 and both 8-level networks under one tag, each in its own sub-run; x = σ in %.
    for (run, method, mode) in
        [("tb/fp32", "fp32", "ptq"), ("tb/gq-ptq-N8", "gq", "ptq"), ("tb/gq-qat-N8", "gq", "qat")]
    {
        let s = series(&tb, run, "scalars", tag);
        assert_eq!(s.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 5], "{run}: {s:?}");
        for (step, v) in s {
            let want = cell_pct(&res, method, mode, step as f64 / 100.0);
            assert!((v - want).abs() < 1e-3, "{run} step {step}: {v} vs results.json {want}");
        }
    }
    // The gap to fp32 at each σ, in points.
    let gap = series(&tb, "tb/gq-qat-N8", "scalars", "segment/miou_gap_to_fp32_vs_sigma/N8");
    assert_eq!(gap.len(), 2, "{gap:?}");
    for (step, v) in gap {
        let s = step as f64 / 100.0;
        let want = cell_pct(&res, "gq", "qat", s) - cell_pct(&res, "fp32", "ptq", s);
        assert!((v - want).abs() < 1e-3, "gap at σ {s}: {v} vs {want}");
    }
    assert!(tb["tb/fp32"]["scalars"]["segment/miou_gap_to_fp32_vs_sigma/N8"].is_null());
    // The results table as a text summary in the grid's own run, with Δ columns.
    let text = tb["tb"]["text"]["segment/results_table"][0][1]
        .as_str()
        .unwrap_or_else(|| panic!("no text summary; runs {:?}", keys(&tb)));
    assert!(text.contains("| Δ 5% |") && text.contains("| gq | 8 | qat |"), "{text}");
    assert!(text.contains("step = σ in %"), "{text}");
    // The unit's own run under its network: fine-tuning loss at every step from 0.
    let unit = format!("tb/gq-qat-N8/s{seed}");
    let qat = res["cells"].as_array().unwrap().iter().find(|c| c["mode"] == "qat").unwrap();
    let steps = qat["finetune"]["steps"].as_i64().unwrap();
    let loss = series(&tb, &unit, "scalars", "finetune/loss");
    assert_eq!(loss.iter().map(|p| p.0).collect::<Vec<_>>(), (0..steps).collect::<Vec<_>>());
    assert!(loss.iter().all(|p| p.1.is_finite() && p.1 > 0.0), "{loss:?}");
    // Deployed (quantized) weight histograms and relative quantization error per layer.
    let ptq = format!("tb/gq-ptq-N8/s{seed}");
    let hists = keys(&tb[&ptq]["histograms"]);
    assert!(hists.iter().any(|t| t.starts_with("deployed_weights/")), "{hists:?}");
    let err = keys(&tb[&ptq]["scalars"]);
    let e = err.iter().find(|t| t.starts_with("quant_error_pct/")).expect("no quant error");
    let v = series(&tb, &ptq, "scalars", e)[0].1;
    assert!(v > 0.0 && v < 100.0, "{e}: {v}%");
    // The same scene under every network, side by side, not padded to a square.
    let img = &tb["tb"]["images"]["samples/segment/sample_0/N8"][0];
    let (w, h) = (img[1].as_i64().unwrap(), img[2].as_i64().unwrap());
    assert!(w >= 5 * 96 && h < w, "input, truth, fp32, 2 networks at 96 px: {w}x{h}");
    // Nothing else: no per-unit logs in the cell folders, no stray runs.
    let mut runs = keys(&tb);
    runs.retain(|r| r != ".");
    runs.sort();
    let want = [
        "tb".to_string(),
        "tb/fp32".into(),
        format!("tb/fp32/s{seed}"),
        "tb/gq-ptq-N8".into(),
        format!("tb/gq-ptq-N8/s{seed}"),
        "tb/gq-qat-N8".into(),
        format!("tb/gq-qat-N8/s{seed}"),
    ];
    assert_eq!(runs, want);
    // Files named by metric, and the terminal table with Δ in 100 columns.
    for f in ["miou_vs_levels.png", "miou_vs_sigma_N8.png", "miou_gap_vs_sigma_N8.png", "table.txt"]
    {
        assert!(run_path.join(f).is_file(), "no {f}");
    }
    let table = std::fs::read_to_string(run_path.join("table.txt")).unwrap();
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
    assert!(table.contains("fp32 (32-bit float)") && !table.contains("N=32"), "{table}");

    // Merge alone writes the cross-network runs, and gives the same bytes again: remove them,
    // merge (as `gqcim merge` after a Slurm array does), compare.
    let before = files_under(&run_path.join("tb"));
    for (rel, _) in before.iter().filter(|(r, _)| r.contains("gqcim-merge")) {
        std::fs::remove_file(run_path.join("tb").join(rel)).unwrap();
    }
    let mut again = gqcim::run::RunDir::open(&run_path).unwrap();
    gqcim::sweep::merge_run(&mut again, serde_json::json!({})).unwrap();
    let after = files_under(&run_path.join("tb"));
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    for (rel, bytes) in &before {
        assert!(after[rel] == *bytes, "{rel} differs after a second merge");
    }

    // `gqcim plot` redraws the charts from results.csv; a wrong task is a named error.
    let out_dir = dir.path().join("replot");
    let csv = run_path.join("results.csv");
    let csv = csv.to_str().unwrap();
    let o = run_gqcim(&[
        "plot",
        "--results",
        csv,
        "--task",
        "segment",
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--prefix",
        "seg_",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out_dir.join("seg_miou_vs_sigma_N8.png").is_file());
    assert!(String::from_utf8_lossy(&o.stdout).contains("fp32 (32-bit float)"));
    let o = run_gqcim(&["plot", "--results", csv, "--task", "pose"]);
    assert!(!o.status.success() && stderr(&o).contains("expected classify, detect or segment"));
}

fn synthetic(trials: usize) -> Vec<GridPoint> {
    let mut v = Vec::new();
    for s in [0.0, 0.01, 0.02, 0.05] {
        let t = if s == 0.0 { 1 } else { trials };
        v.push(GridPoint {
            method: "fp32".into(),
            levels: 32,
            mode: "ptq".into(),
            sigma: s,
            variant: None,
            policy: None,
            seeds: 1,
            trials: t,
            mean: 0.95 - s,
            ci95: 0.004,
        });
    }
    for m in ["gq", "gq-noise", "uniform-mse", "lsq"] {
        for mode in ["ptq", "qat", "qat-noise"] {
            for n in [2, 3, 4, 8] {
                for s in [0.0, 0.01, 0.02, 0.05] {
                    v.push(GridPoint {
                        method: m.into(),
                        levels: n,
                        mode: mode.into(),
                        sigma: s,
                        variant: None,
                        policy: None,
                        seeds: 1,
                        trials: if s == 0.0 { 1 } else { trials },
                        mean: 0.95 - s - 0.2 / n as f64,
                        ci95: 0.01,
                    });
                }
            }
        }
    }
    v
}

/// Every chart of a 12-series grid: the PNG has the documented size, the legend box lies
/// beside the axes (disjoint from the data area and the whole plot area) and inside the image.
#[test]
fn charts_keep_the_legend_off_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let pts = synthetic(3);
    let charts =
        write_charts(dir.path(), &pts, "", "mAP@0.5 (%)", &[2, 3, 4, 8], &[0.0, 0.01, 0.02, 0.05]);
    let names: Vec<String> =
        charts.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().to_string()).collect();
    assert!(names.contains(&"map50_vs_levels.png".to_string()), "{names:?}");
    assert!(names.contains(&"map50_vs_sigma_N3.png".to_string()), "{names:?}");
    assert!(names.contains(&"map50_gap_vs_sigma_N8.png".to_string()), "{names:?}");
    assert_eq!(charts.len(), 1 + 2 * 4, "{names:?}");
    for (path, l) in &charts {
        assert_eq!(image::image_dimensions(path).unwrap(), SIZE, "{}", path.display());
        assert!(!l.legend.intersects(&l.data), "{}: legend over data {l:?}", path.display());
        assert!(!l.legend.intersects(&l.plot), "{}: legend over axes {l:?}", path.display());
        assert!(l.data.inside(&l.plot) && l.data.w > 400 && l.data.h > 250, "{l:?}");
        let full = gqcim::glance::layout::Rect { x: 0, y: 0, w: SIZE.0 as i32, h: SIZE.1 as i32 };
        assert!(l.legend.inside(&full) && l.legend.h >= 13 * 20, "13 entries: {l:?}");
    }
    // The legend box is drawn where the layout says: its border is black, its inside white.
    let img = image::open(&charts[0].0).unwrap().to_rgb8();
    let lg = charts[0].1.legend;
    assert_eq!(img.get_pixel(lg.x as u32, (lg.y + lg.h / 2) as u32).0, [0, 0, 0]);
    assert_eq!(img.get_pixel((lg.right() - 3) as u32, (lg.bottom() - 3) as u32).0, [255; 3]);
}

/// A grid comparing layer policies (`compare.keep_fp32_sets`): each policy's network is its
/// own sub-run on the same card as fp32, its gap against the one fp32, and its own rows.
#[test]
fn layer_policies_are_sub_runs_of_their_own() {
    use gqcim::analog::montecarlo::{McStats, Trial};
    use gqcim::glance::tb_grid::{write_network_runs, GridTags};
    let cell = |method: &str, kept: &str, sigma: f64, metric: f64| gqcim::grid::Cell {
        method: method.into(),
        levels: if method == "fp32" { 32 } else { 8 },
        mode: if method == "fp32" { "ptq".into() } else { "qat".into() },
        sigma,
        stats: McStats::from_trials(
            (0..3).map(|t| Trial { trial: t, seed: t as i64, metric }).collect(),
        ),
        digital_accuracy: metric,
        finetune: None,
        same_as: None,
        cost: Default::default(),
        fp32_layers: kept.into(),
        t_inference: None,
    };
    let mut cells = Vec::new();
    for s in [0.0, 0.02] {
        cells.push(cell("fp32", "", s, 0.9 - s));
        cells.push(cell("gq", "", s, 0.85 - s));
        cells.push(cell("gq", "conv1+fc", s, 0.88 - s));
    }
    let pts = gqcim::glance::grid::points(&cells, 1);
    let dir = tempfile::tempdir().unwrap();
    let tags = GridTags::new("classify", "top-1 accuracy (%)", &[0.0, 0.02]);
    write_network_runs(dir.path(), &tags, &pts, &[8]).unwrap();
    let tb = read_runs(dir.path());
    let gap = "classify/top1_gap_to_fp32_vs_sigma/N8";
    for (run, want_gap) in [("tb/gq-qat-N8", -5.0), ("tb/gq-qat-N8-fp32-conv1_fc", -2.0)] {
        let g = series(&tb, run, "scalars", gap);
        assert_eq!(g.len(), 2, "{run}: {g:?}");
        assert!(g.iter().all(|p| (p.1 - want_gap).abs() < 1e-3), "{run}: {g:?}");
    }
    assert_eq!(series(&tb, "tb/fp32", "scalars", "classify/top1_vs_sigma/N8").len(), 2);
    let md = gqcim::glance::table::markdown(&pts, "top-1 accuracy (%)", &[0.0, 0.02]);
    assert!(md.contains("| gq (fp32: conv1, fc) | 8 | qat |") && md.contains("| gq | 8 | qat |"));
}

/// `gqcim plot` reads the seed count from results.json beside results.csv: two seeds give
/// no CI (marked †) however many trials were pooled.
#[test]
fn replot_takes_the_seed_count_from_results_json() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("results.csv");
    std::fs::write(
        &csv,
        "method,levels,mode,sigma,trials,mean,std,ci95,min,max,digital\n\
         fp32,32,ptq,0,2,0.9,0,0.01,0.9,0.9,0.9\n\
         fp32,32,ptq,0.05,6,0.8,0.02,0.3,0.7,0.9,0.9\n\
         gq,8,qat,0,2,0.85,0,0.01,0.85,0.85,0.85\n\
         gq,8,qat,0.05,6,0.75,0.02,0.3,0.7,0.8,0.85\n",
    )
    .unwrap();
    let out = dir.path().join("plots");
    let (_, one_seed) = gqcim::glance::grid::replot(&csv, "classify", &out, "").unwrap();
    assert!(one_seed.contains("75.00±30.00"), "6 trials of one seed get a CI: {one_seed}");
    std::fs::write(dir.path().join("results.json"), r#"{"seeds": [1, 2]}"#).unwrap();
    let (charts, two_seeds) = gqcim::glance::grid::replot(&csv, "classify", &out, "").unwrap();
    assert!(two_seeds.contains("75.00†") && !two_seeds.contains("±30.00"), "{two_seeds}");
    assert!(charts.iter().any(|p| p.ends_with("top1_gap_vs_sigma_N8.png")), "{charts:?}");
    let bad = gqcim::glance::grid::replot(&dir.path().join("none.csv"), "classify", &out, "");
    assert!(bad.unwrap_err().to_string().contains("none.csv"));
}

/// The cost grid's Pareto charts are drawn by the same renderer (legend beside the axes):
/// the chart size, the TensorBoard images at that size, and nothing drawn without data.
#[test]
fn pareto_charts_share_the_grid_chart_layout() {
    use gqcim::costreport::{write_cost_outputs, CellCost, CostPoint};
    let dir = tempfile::tempdir().unwrap();
    let costs: Vec<CellCost> = (0..6)
        .map(|i| CellCost {
            programming: format!("write-verify-tol{i}"),
            pulses: 1e5 * (1 + i) as f64,
            inference_energy_j: 1e-9 * (1 + i % 3) as f64,
            ..Default::default()
        })
        .collect();
    let pts: Vec<CostPoint> = costs
        .iter()
        .enumerate()
        .map(|(i, c)| CostPoint {
            method: if i < 3 { "gq" } else { "lsq" },
            levels: 8,
            mode: "qat",
            accuracy: 80.0 + i as f64,
            cost: c,
        })
        .collect();
    let tb_dir = dir.path().join("tb");
    let mut tb = gqcim::tb::Tb::replaceable(&tb_dir, 0.0);
    write_cost_outputs(dir.path(), &mut tb, &pts, Some(90.0), "top-1 accuracy (%)").unwrap();
    tb.commit().unwrap();
    for f in ["pareto_accuracy_vs_pulses.png", "pareto_accuracy_vs_energy.png"] {
        assert_eq!(image::image_dimensions(dir.path().join(f)).unwrap(), SIZE, "{f}");
    }
    let tb = read_runs(dir.path());
    let img = &tb["tb"]["images"]["cost/pareto_accuracy_vs_pulses"][0];
    assert_eq!((img[1].as_i64(), img[2].as_i64()), (Some(SIZE.0 as i64), Some(SIZE.1 as i64)));
    assert!(std::fs::read_to_string(dir.path().join("cost.md")).unwrap().contains("gq qat"));
}

/// Ground truth stays visible on black and on white; a detection carries a tab in its class
/// colour with text in it.
#[test]
fn detection_pictures_label_boxes_and_show_truth_on_any_background() {
    use gqcim::data::scenes::SceneBox;
    use gqcim::glance::picture::CLASS_COLOURS;
    use gqcim::tasks::detect::draw_scene;
    use gqcim::tasks::detect::metrics::Detection;
    for bg in [0u8, 255] {
        let gray = vec![bg; 32 * 32];
        let gt = SceneBox { class: 1, x1: 4.0, y1: 6.0, x2: 12.0, y2: 22.0 };
        let det = Detection { image_id: 0, class: 4, score: 0.87, bbox: [16.0, 14.0, 30.0, 30.0] };
        let p = draw_scene(&gray, 32, 32, 3, &[gt], &[det], 0.3);
        assert_eq!((p.w, p.h), (96, 96));
        // The truth's left edge (x = 12 px) has black and white dashes whatever the background.
        let edge: Vec<[u8; 3]> = (20..64).map(|y| p.get(12, y)).collect();
        assert!(edge.contains(&[0, 0, 0]) && edge.contains(&[255, 255, 255]), "bg {bg}");
        // The label tab above the box in the coat colour, with text ink in it.
        let tab: Vec<[u8; 3]> = (48..96).map(|x| p.get(x, 36)).collect();
        assert!(tab.contains(&CLASS_COLOURS[4]), "no class-coloured tab: {tab:?}");
        assert!(tab.iter().any(|c| *c != CLASS_COLOURS[4] && *c != [bg; 3]), "no label text");
    }
    let legend = gqcim::tasks::detect::detection_legend(600);
    assert_eq!(legend.w, 600);
    assert!(legend.rgb.chunks(3).any(|c| c == CLASS_COLOURS[9]), "no ankle-boot swatch");
}

#[test]
fn segmentation_background_is_neither_black_nor_white() {
    let bg = gqcim::tasks::segment::mask_colour(0);
    assert_ne!(bg, [0, 0, 0]);
    assert_ne!(bg, [255, 255, 255]);
    let all: Vec<[u8; 3]> = (0..=10).map(gqcim::tasks::segment::mask_colour).collect();
    for (i, a) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|b| b != a), "class {i} shares its colour");
    }
}

/// `make tensorboard` serves on 127.0.0.1 unless TB_BIND says otherwise.
#[test]
fn make_tensorboard_binds_to_localhost() {
    let run = |extra: &[&str]| {
        let out = std::process::Command::new("make")
            .args(["-n", "-s", "tensorboard"])
            .args(extra)
            .current_dir(repo_root())
            .output()
            .expect("make");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let default = run(&[]);
    assert!(default.contains("--host 127.0.0.1") && !default.contains("bind_all"), "{default}");
    let open = run(&["TB_BIND=0.0.0.0"]);
    assert!(open.contains("--host 0.0.0.0"), "{open}");
}
