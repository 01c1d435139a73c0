use hamos_api::Backend;
use std::time::Instant;
#[test]
#[ignore]
fn bench_fused() {
    let backend = std::sync::Arc::new(hamos_candle::CandleBackend::cpu()) as std::sync::Arc<dyn Backend>;
    let mut rng = hamos_api::rng_from_seed(1);
    let (m, c, s, d): (usize, usize, usize, usize) = std::env::var("SHAPE").map(|v| { let x: Vec<usize> = v.split(",").map(|t| t.parse().unwrap()).collect(); (x[0], x[1], x[2], x[3]) }).unwrap_or((400, 100, 1000, 128));
    let q = backend.randn(&[m, d], 0.0, 1.0, &mut rng).unwrap().l2_normalize(1).unwrap();
    let bank = backend.randn(&[c, s, d], 0.0, 1.0, &mut rng).unwrap().l2_normalize(2).unwrap();
    let counts = vec![s; c];
    for _ in 0..2 { q.class_logsumexp(&bank, &counts, 2.0).unwrap(); }
    let t = Instant::now();
    let n = 5;
    for _ in 0..n { q.class_logsumexp(&bank, &counts, 2.0).unwrap(); }
    let secs = t.elapsed().as_secs_f64() / n as f64;
    println!("logsumexp: {:.1} ms, {:.1} GFLOP/s", secs * 1e3, 2.0 * (m * c * s * d) as f64 / secs / 1e9);
    let targets: Vec<(usize, usize)> = (0..m).map(|i| (i, i % c)).chain((0..m).map(|i| (i, (i + 1) % c))).collect();
    for _ in 0..2 { q.class_kth_nearest(&bank, &counts, &targets, 200).unwrap(); }
    let t = Instant::now();
    for _ in 0..n { q.class_kth_nearest(&bank, &counts, &targets, 200).unwrap(); }
    let secs = t.elapsed().as_secs_f64() / n as f64;
    println!("kth: {:.2} ms, {:.1} GFLOP/s", secs * 1e3, 2.0 * (2 * m * s * d) as f64 / secs / 1e9);
}
