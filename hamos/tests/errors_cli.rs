//! Bad input to the `hamos` command is a one-line error that names the problem: a broken run
//! directory, empty or single-class data, bad values, missing folders and backends.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod cli_common;

use std::path::Path;

use cli_common::{hamos, small};

/// A run directory with `config.toml` and `VERSION` but no checkpoint, or from another version.
#[test]
fn eval_names_what_is_wrong_with_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    let config = hamos(&cache).args(["config"]).output().unwrap();
    std::fs::write(run.join("config.toml"), &config.stdout).unwrap();
    let version = hamos(&cache).arg("--version").output().unwrap();
    std::fs::write(run.join("VERSION"), &version.stdout).unwrap();
    let eval = |dir: &Path| {
        let result = hamos(&cache).args(["eval", "--run"]).arg(dir).output().unwrap();
        assert!(!result.status.success());
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let stderr = eval(&run);
    assert!(stderr.contains("no checkpoint") && stderr.contains("hamos run --out"), "{stderr}");
    std::fs::write(run.join("VERSION"), "hamos 0.0.1\n").unwrap();
    let stderr = eval(&run);
    assert!(stderr.contains("written by hamos 0.0.1"), "{stderr}");
    let stderr = eval(&tmp.path().join("nowhere"));
    assert!(stderr.contains("not a directory"), "{stderr}");
}

/// Writes idx files of `n` 28x28 images and the given labels.
fn write_idx(dir: &Path, name: &str, labels: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    let n = labels.len() as u32;
    let mut images = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    images.extend((0..n as usize * 784).map(|i| (i * 7 % 251) as u8));
    let mut label_bytes = vec![0, 0, 8, 1];
    label_bytes.extend(n.to_be_bytes());
    label_bytes.extend(labels);
    let (i, l) = (dir.join(format!("{name}-images")), dir.join(format!("{name}-labels")));
    std::fs::write(&i, images).unwrap();
    std::fs::write(&l, label_bytes).unwrap();
    (i, l)
}

/// An empty ID test set and single-class training data stop with a message naming the problem.
#[test]
fn empty_test_set_and_single_class_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (empty_images, empty_labels) = write_idx(tmp.path(), "empty", &[]);
    let (one_images, one_labels) = write_idx(tmp.path(), "one", &[3; 64]);
    let spec = |i: &Path, l: &Path| format!("{{ format = \"idx\", images = {:?}, labels = {:?} }}", i, l);
    let cases = [
        (format!("data.test={}", spec(&empty_images, &empty_labels)), "empty"),
        (format!("data.train={}", spec(&one_images, &one_labels)), "class"),
    ];
    for (i, (set, expected)) in cases.into_iter().enumerate() {
        let result = hamos(&tmp.path().join("cache"))
            .args(["run", "--out"])
            .arg(tmp.path().join(format!("run{i}")))
            .args(small().iter().flat_map(|s| ["--set", s]))
            .args(["--set", &set])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{set}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error:") && last.contains(expected), "{set}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn bad_input_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[data.ood]]\nname = \"mine\"\ndataset = { format = \"idx\", images = \"no/such/images.gz\" }\n",
    )
    .unwrap();
    let result = hamos(&tmp.path().join("cache"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(tmp.path().join("run"))
        .args(small().iter().flat_map(|s| ["--set", s]))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success());
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error:") && last.contains("no/such/images.gz"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Output folders are never created silently, and a benchmark of a backend that is not compiled
/// in is an error rather than an empty table.
#[test]
fn missing_output_folders_and_backends_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("no/such/dir/x.npz");
    let result = hamos(&cache)
        .args(["embed", "--data", "test", "--checkpoint", "none.safetensors", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success() && stderr.contains("does not exist"), "{stderr}");
    assert!(!tmp.path().join("no").exists());
    if !cfg!(feature = "tch") {
        let result =
            hamos(&cache).args(["bench", "train", "--backends", "tch", "--steps", "1"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success() && stderr.contains("`tch` is not compiled in"), "{stderr}");
    }
}
