//! `hamos synth` end to end on embedding files, and its errors on bad ones.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::path::Path;
use std::process::Command;

use npyz::WriterBuilder;

fn hamos() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hamos"));
    cmd.env_remove("HAMOS_SAMPLER__KIND");
    cmd
}

/// Three well separated classes of unit vectors in 8 dimensions.
fn dataset() -> (Vec<f32>, Vec<i64>) {
    let mut rng = hamos_api::rng_from_seed(4);
    let noise = hamos_api::backend::randn_host(90 * 8, 0.0, 0.1, &mut rng);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, chunk) in noise.chunks(8).enumerate() {
        let class = i / 30;
        let mut v = chunk.to_vec();
        v[class] += 1.0;
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        rows.extend(v.iter().map(|x| x / n));
        labels.push(class as i64);
    }
    (rows, labels)
}

fn write_npz(path: &Path, rows: &[f32], dim: usize, labels: &[i64]) {
    let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
    let options = zip::write::FileOptions::default();
    let (n, rows_n) = (labels.len() as u64, (rows.len() / dim) as u64);
    let mut w = npz
        .array::<f32>("embeddings", options)
        .unwrap()
        .default_dtype()
        .shape(&[rows_n, dim as u64])
        .begin_nd()
        .unwrap();
    w.extend(rows.iter().copied()).unwrap();
    w.finish().unwrap();
    let mut w = npz.array::<i64>("labels", options).unwrap().default_dtype().shape(&[n]).begin_nd().unwrap();
    w.extend(labels.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn synth(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    hamos()
        .args(["synth", "--embeddings"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--set", "energy.k=10", "--set", "train.buffer_size=30"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn synthesizes_from_npz_and_writes_outliers_tags_and_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let input = dir.path().join("emb.npz");
    write_npz(&input, &rows, 8, &labels);
    let out = dir.path().join("out.npz");
    let result = synth(&input, &out, &[]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(stdout.contains("round 4"), "{stdout}");

    let mut archive = npyz::npz::NpzArchive::open(&out).unwrap();
    let outliers = archive.by_name("outliers").unwrap().unwrap();
    assert_eq!(outliers.shape(), &[3 * 2 * 5, 8]); // C = 3, n_adj clipped to 2, R = 5
    let values: Vec<f32> = outliers.into_vec().unwrap();
    for row in values.chunks(8) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    let rounds: Vec<i64> = archive.by_name("round").unwrap().unwrap().into_vec().unwrap();
    assert_eq!(rounds.iter().copied().max(), Some(4));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(report["rounds"].as_array().unwrap().len(), 5);
    assert!(report["notes"].to_string().contains("n_adj = 4 clipped to 2"), "{report}");
    // The sampler's config is a JSON object, not a TOML string.
    assert_eq!(report["sampler"]["kind"], "hmc", "{report}");
    assert_eq!(report["sampler"]["rounds"], 5, "{report}");
}

/// A run's config.toml with a sampler swapped on the command line (the preset's HMC fields do not
/// carry over to MALA); outputs into a missing folder and a format other than the input's are
/// errors that say what to do.
#[test]
fn swaps_the_sampler_of_a_run_config_and_names_bad_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let input = dir.path().join("emb.npz");
    write_npz(&input, &rows, 8, &labels);
    let config = hamos().arg("config").output().unwrap();
    let run_config = dir.path().join("config.toml");
    std::fs::write(&run_config, &config.stdout).unwrap();
    let out = dir.path().join("mala.npz");
    let result =
        synth(&input, &out, &["--config", run_config.to_str().unwrap(), "--set", "sampler.kind=mala"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(report["sampler"]["kind"], "mala", "{report}");
    assert!(report["sampler"].get("leapfrog_steps").is_none(), "{report}");

    let missing = dir.path().join("no/such/dir/x.npz");
    let result = synth(&input, &missing, &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("does not exist"), "{stderr}");
    assert!(!dir.path().join("no").exists(), "folders were created");
    let result = synth(&input, &dir.path().join("o.npy"), &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "{stderr}");
    assert!(
        stderr.contains("ending in .npz") && stderr.contains("o.npz") && !stderr.contains("Npz"),
        "{stderr}"
    );
}

#[test]
fn synthesizes_from_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let input = dir.path().join("emb.safetensors");
    let row_bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    let label_bytes: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        (
            "embeddings",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![90, 8], &row_bytes).unwrap(),
        ),
        (
            "labels",
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![90], &label_bytes).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, None, &input).unwrap();
    let out = dir.path().join("out.safetensors");
    let result = synth(&input, &out, &["--set", "sampler.kind=random_walk"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(tensors.tensor("outliers").unwrap().shape(), &[30, 8]);
    assert_eq!(tensors.tensor("class_u").unwrap().shape(), &[30]);
}

fn expect_error(rows: &[f32], dim: usize, labels: &[i64], extra: &[&str], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("emb.npz");
    write_npz(&input, rows, dim, labels);
    let result = synth(&input, &dir.path().join("out.npz"), extra);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "accepted bad input");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let (rows, labels) = dataset();
    let mut nan = rows.clone();
    nan[17] = f32::NAN;
    expect_error(&nan, 8, &labels, &[], "row 2 of `embeddings` is not finite");
    expect_error(&rows, 8, &labels[..89], &[], "`labels` must be [90]");
    let mut negative = labels.clone();
    negative[5] = -1;
    expect_error(&rows, 8, &negative, &[], "label -1 of row 5 is negative");
    expect_error(&rows, 8, &labels, &["--num-classes", "2"], "label 2 out of range for 2 classes");
    let mut gap = labels.clone();
    gap.iter_mut().filter(|l| **l == 1).for_each(|l| *l = 3);
    expect_error(&rows, 8, &gap, &[], "class 1 has no embeddings");
    expect_error(&rows[..30 * 8], 8, &vec![0; 30], &[], "at least 2 classes");
    let mut zero = rows.clone();
    zero[..8].iter_mut().for_each(|x| *x = 0.0);
    expect_error(&zero, 8, &labels, &[], "row 0 of `embeddings` is zero");
}

#[test]
fn rows_off_the_sphere_are_normalized_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let scaled: Vec<f32> = rows.iter().map(|x| x * 3.0).collect();
    let input = dir.path().join("emb.npz");
    write_npz(&input, &scaled, 8, &labels);
    let result = synth(&input, &dir.path().join("out.npz"), &[]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stdout).contains("90 of 90 rows were not unit-norm"));
}

#[test]
fn missing_and_mismatched_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let result = synth(&dir.path().join("none.npz"), &dir.path().join("out.npz"), &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("none.npz"), "{stderr}");
    let result = synth(&dir.path().join("none.npz"), &dir.path().join("out.csv"), &[]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("unknown format"), "{stderr}");
}

fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], values: &[T]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = npyz::WriteOptions::new().default_dtype().shape(shape).writer(file).begin_nd().unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

#[test]
fn synthesizes_from_a_pair_of_npy_files() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let (emb, lab) = (dir.path().join("emb.npy"), dir.path().join("labels.npy"));
    write_npy(&emb, &[90, 8], &rows);
    let labels32: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    write_npy(&lab, &[90], &labels32);
    let out = dir.path().join("out.npy");
    let without_labels = synth(&emb, &out, &[]);
    assert!(String::from_utf8_lossy(&without_labels.stderr).contains("--labels"));
    let result = synth(&emb, &out, &["--labels", lab.to_str().unwrap()]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let tags = npyz::NpyFile::new(std::fs::File::open(dir.path().join("out.tags.npy")).unwrap()).unwrap();
    assert_eq!(tags.shape(), &[30, 4]);
    let outliers = npyz::NpyFile::new(std::fs::File::open(&out).unwrap()).unwrap();
    assert_eq!(outliers.shape(), &[30, 8]);
}

/// `embeddings` as `.npy` with the given dtype (`<f4`, `>f4`, `<f8`, ...) and order; `rows`
/// given row-major.
fn write_typed_npy<T: npyz::Serialize + Copy>(
    path: &Path,
    rows: &[T],
    dim: usize,
    dtype: &str,
    fortran: bool,
) {
    let n = rows.len() / dim;
    let values: Vec<T> = match fortran {
        false => rows.to_vec(),
        true => (0..rows.len()).map(|i| rows[(i % n) * dim + i / n]).collect(),
    };
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let dtype = npyz::DType::Plain(dtype.parse::<npyz::TypeStr>().unwrap());
    let order = if fortran { npyz::Order::Fortran } else { npyz::Order::C };
    let w =
        npyz::WriteOptions::<T>::new().dtype(dtype).order(order).shape(&[n as u64, dim as u64]).writer(file);
    let mut w = w.begin_nd().unwrap();
    w.extend(values).unwrap();
    w.finish().unwrap();
}

#[test]
fn every_dtype_order_and_byte_order_reads_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let lab = dir.path().join("labels.npy");
    write_npy(&lab, &[90], &labels);
    let outliers = |dtype: &str, fortran: bool| {
        let emb = dir.path().join(format!("emb{}{}.npy", dtype.replace(['<', '>'], "_"), fortran));
        if dtype.ends_with("f4") {
            write_typed_npy(&emb, &rows, 8, dtype, fortran);
        } else {
            let wide: Vec<f64> = rows.iter().map(|&x| f64::from(x)).collect();
            write_typed_npy(&emb, &wide, 8, dtype, fortran);
        }
        let out = dir.path().join("out.npy");
        let result = synth(&emb, &out, &["--labels", lab.to_str().unwrap()]);
        assert!(result.status.success(), "{dtype}: {}", String::from_utf8_lossy(&result.stderr));
        std::fs::read(&out).unwrap()
    };
    let reference = outliers("<f4", false);
    for (dtype, fortran) in [(">f4", false), ("<f4", true), (">f8", true), ("<f8", false)] {
        assert!(outliers(dtype, fortran) == reference, "{dtype} fortran={fortran}");
    }
}

#[test]
fn a_truncated_array_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let (emb, lab) = (dir.path().join("emb.npy"), dir.path().join("labels.npy"));
    write_npy(&emb, &[90, 8], &rows);
    write_npy(&lab, &[90], &labels);
    let bytes = std::fs::read(&emb).unwrap();
    std::fs::write(&emb, &bytes[..bytes.len() - 10]).unwrap();
    let result = synth(&emb, &dir.path().join("out.npy"), &["--labels", lab.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success() && stderr.contains("reading `embeddings` (720 values of f4)"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn written_npz_is_stored_uncompressed_like_numpy_savez() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let (input, out) = (dir.path().join("emb.npz"), dir.path().join("out.npz"));
    write_npz(&input, &rows, 8, &labels);
    assert!(synth(&input, &out, &[]).status.success());
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    for i in 0..archive.len() {
        let entry = archive.by_index(i).unwrap();
        assert_eq!(entry.compression(), zip::CompressionMethod::Stored, "{}", entry.name());
    }
}

#[test]
fn bench_synth_times_the_samplers_on_an_embeddings_file() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, labels) = dataset();
    let input = dir.path().join("emb.npz");
    write_npz(&input, &rows, 8, &labels);
    let bench = |extra: &[&str]| {
        hamos()
            .args(["bench", "synth", "--runs", "1", "--samplers", "hmc,vos", "--embeddings"])
            .arg(&input)
            .args(["--set", "energy.k=10", "--set", "train.buffer_size=30"])
            .args(extra)
            .output()
            .unwrap()
    };
    let result = bench(&[]);
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains("90 rows, C = 3, d = 8, buffer S = 30"), "{stdout}");
    assert!(stdout.contains("| C = 3: ms |"), "{stdout}");
    for row in ["| hmc |", "| vos |"] {
        assert!(stdout.contains(row), "{stdout}");
    }
    let conflicting = bench(&["--classes", "10"]);
    assert!(!conflicting.status.success());
    assert!(String::from_utf8_lossy(&conflicting.stderr).contains("--classes"));
}
