//! The data loaders on files written here in the real formats, the shipped sets, the splits,
//! the batch stream and the augmentation.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use hamos::data::{
    check_id_set, limit_per_class, load, load_all, split_validation, Augmenter, BatchOptions, BatchPlan,
    Batches, DatasetSpec, ImageSet, Normalizer, ViewAugmenter, ViewParams,
};
use hamos::DataConfig;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx_spec(images: &Path, labels: Option<&Path>) -> DatasetSpec {
    DatasetSpec::Idx { images: images.into(), labels: labels.map(Into::into) }
}

fn err<T: std::fmt::Debug>(r: hamos::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn idx_round_trip_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..3 * 4 * 5).map(|i| (i * 7 % 256) as u8).collect();
    let images = idx_bytes(&[3, 4, 5], &pixels);
    let labels = idx_bytes(&[3], &[2, 0, 1]);
    for (suffix, wrap) in [("", false), (".gz", true)] {
        let (ip, lp) = (dir.path().join(format!("i{suffix}")), dir.path().join(format!("l{suffix}")));
        std::fs::write(&ip, if wrap { gzip(&images) } else { images.clone() }).unwrap();
        std::fs::write(&lp, if wrap { gzip(&labels) } else { labels.clone() }).unwrap();
        let set = load(&idx_spec(&ip, Some(&lp)), 0, None).unwrap();
        assert_eq!((set.shape, set.len(), set.classes), ([1, 4, 5], 3, 3));
        assert_eq!(set.pixels, pixels);
        assert_eq!(set.labels, Some(vec![2, 0, 1]));
        assert_eq!(set.image(1), &pixels[20..40]);
        let unlabelled = load(&idx_spec(&ip, None), 0, None).unwrap();
        assert_eq!((unlabelled.labels, unlabelled.classes), (None, 0));
    }
}

#[test]
fn idx_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated-idx3");
    std::fs::write(&truncated, idx_bytes(&[3, 4, 5], &[0; 50])).unwrap();
    let msg = err(load(&idx_spec(&truncated, None), 0, None));
    assert!(msg.contains("truncated-idx3") && msg.contains("truncated") && msg.contains("60"), "{msg}");

    let bad = dir.path().join("bad-magic");
    let mut bytes = idx_bytes(&[1, 2, 2], &[0; 4]);
    bytes[0] = 0x50;
    std::fs::write(&bad, bytes).unwrap();
    let msg = err(load(&idx_spec(&bad, None), 0, None));
    assert!(msg.contains("bad-magic") && msg.contains("magic"), "{msg}");

    let wrong_dims = dir.path().join("labels-as-images");
    std::fs::write(&wrong_dims, idx_bytes(&[4], &[0; 4])).unwrap();
    assert!(err(load(&idx_spec(&wrong_dims, None), 0, None)).contains("dimensions"));

    let missing = dir.path().join("nowhere.gz");
    assert!(err(load(&idx_spec(&missing, None), 0, None)).contains("nowhere.gz"));
}

#[test]
fn label_out_of_range_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let (ip, lp) = (dir.path().join("i"), dir.path().join("l"));
    std::fs::write(&ip, idx_bytes(&[4, 1, 1], &[1, 2, 3, 4])).unwrap();
    std::fs::write(&lp, idx_bytes(&[4], &[0, 1, 2, 7])).unwrap();
    let set = load(&idx_spec(&ip, Some(&lp)), 0, None).unwrap();
    let msg = err(check_id_set(&set, 3));
    assert!(msg.contains("record 3") && msg.contains("label 7"), "{msg}");
    // With 8 classes the labels fit, but classes 3 to 6 have no image.
    assert!(err(check_id_set(&set, 8)).contains("3, 4, 5, 6"));
}

fn cifar_record(label_bytes: &[u8], seed: u8) -> Vec<u8> {
    let mut rec = label_bytes.to_vec();
    rec.extend((0..3072).map(|i| (i as u8).wrapping_mul(3).wrapping_add(seed)));
    rec
}

#[test]
fn cifar_binary_loaders() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("data_batch_1.bin"), dir.path().join("data_batch_2.bin"));
    std::fs::write(&a, [cifar_record(&[3], 0), cifar_record(&[9], 1)].concat()).unwrap();
    std::fs::write(&b, cifar_record(&[0], 2)).unwrap();
    let set = load(&DatasetSpec::Cifar { files: vec![a.clone(), b], classes: 10 }, 0, None).unwrap();
    assert_eq!((set.shape, set.len(), set.classes), ([3, 32, 32], 3, 10));
    assert_eq!(set.labels, Some(vec![3, 9, 0]));
    // Pixel (row 5, column 7) of each plane of image 1: the record stores R, G, B planes in turn.
    for c in 0..3 {
        let i = c * 1024 + 5 * 32 + 7;
        assert_eq!(set.image(1)[i], (i as u8).wrapping_mul(3).wrapping_add(1));
    }

    let fine = dir.path().join("train.bin");
    std::fs::write(&fine, [cifar_record(&[4, 77], 0), cifar_record(&[19, 99], 5)].concat()).unwrap();
    let set = load(&DatasetSpec::Cifar { files: vec![fine.clone()], classes: 100 }, 0, None).unwrap();
    assert_eq!((set.labels.clone(), set.classes), (Some(vec![77, 99]), 100));
    assert_eq!(set.image(1)[2048], 5);

    std::fs::write(&a, [cifar_record(&[3], 0), vec![1, 2, 3]].concat()).unwrap();
    let msg = err(load(&DatasetSpec::Cifar { files: vec![a], classes: 10 }, 0, None));
    assert!(msg.contains("data_batch_1.bin") && msg.contains("3073"), "{msg}");
    // A CIFAR-10 label byte of 10 is out of range; the message names the record.
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, [cifar_record(&[1], 0), cifar_record(&[10], 0)].concat()).unwrap();
    let msg = err(load(&DatasetSpec::Cifar { files: vec![bad], classes: 10 }, 0, None));
    assert!(msg.contains("record 1") && msg.contains("label 10"), "{msg}");
}

fn write_png(path: &Path, w: u32, h: u32, color: png::ColorType, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut enc = png::Encoder::new(std::fs::File::create(path).unwrap(), w, h);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(data).unwrap();
}

/// An 8x8 baseline JPEG of the colour (200, 40, 90) (made with Pillow, quality 95).
const JPEG_HEX: &str = concat!(
    "ffd8ffe000104a46494600010100000100010000ffdb004300020101010101020101010202020202040302020202050404",
    "0304060506060605060606070908060709070606080b08090a0a0a0a0a06080b0c0b0a0c090a0a0affdb00430102020202",
    "0202050303050a0706070a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a",
    "0a0a0a0a0a0a0a0a0a0a0affc00011080008000803012200021101031101ffc40015000101000000000000000000000000",
    "00000008ffc40014100100000000000000000000000000000000ffc4001501010100000000000000000000000000000409",
    "ffc40014110100000000000000000000000000000000ffda000c03010002110311003f009dc01d4c1fffd9",
);

fn jpeg_bytes() -> Vec<u8> {
    (0..JPEG_HEX.len()).step_by(2).map(|i| u8::from_str_radix(&JPEG_HEX[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn image_list_converts_grey_to_rgb_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("imgs");
    let grey: Vec<u8> = (0..16).map(|i| i * 10).collect();
    write_png(&root.join("a/grey.png"), 4, 4, png::ColorType::Grayscale, &grey);
    let rgb: Vec<u8> = (0..48).map(|i| i as u8).collect();
    write_png(&root.join("b/rgb image.png"), 4, 4, png::ColorType::Rgb, &rgb);
    let list = dir.path().join("test.txt");
    std::fs::write(&list, "a/grey.png 1\n\n  b/rgb image.png 0  \n").unwrap();
    let spec = DatasetSpec::ImageList { root: root.clone(), list: list.clone() };
    let set = load(&spec, 0, Some([3, 4, 4])).unwrap();
    assert_eq!((set.shape, set.len(), set.labels.clone(), set.classes), ([3, 4, 4], 2, Some(vec![1, 0]), 2));
    for c in 0..3 {
        assert_eq!(&set.image(0)[c * 16..(c + 1) * 16], grey.as_slice(), "grey plane copied to channel {c}");
    }
    // Interleaved RGB becomes CHW: red plane first.
    assert_eq!(set.image(1)[1], 3);
    assert_eq!(set.image(1)[16 + 1], 4);
    assert_eq!(set.image(1)[32 + 1], 5);
    // Without an ID shape the first image decides: grey, then RGB is converted to luma.
    let own = load(&spec, 0, None).unwrap();
    assert_eq!(own.shape, [1, 4, 4]);
    assert_eq!(own.image(1)[0], ((587 + 114 * 2 + 500) / 1000) as u8);

    std::fs::write(&list, "a/grey.png 1\nb/rgb image.png\n").unwrap();
    let msg = err(load(&spec, 0, None));
    assert!(msg.contains("test.txt:2"), "{msg}");

    write_png(&root.join("c/big.png"), 5, 4, png::ColorType::Grayscale, &[0; 20]);
    std::fs::write(&list, "a/grey.png 1\nc/big.png 0\n").unwrap();
    let msg = err(load(&spec, 0, Some([3, 4, 4])));
    assert!(msg.contains("big.png") && msg.contains("4x5") && msg.contains("4x4"), "{msg}");
}

#[test]
fn image_folder_labels_by_sorted_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("folder");
    write_png(&root.join("zebra/1.png"), 8, 8, png::ColorType::Grayscale, &[9; 64]);
    write_png(&root.join("ant/2.png"), 8, 8, png::ColorType::Grayscale, &[1; 64]);
    write_png(&root.join("ant/1.png"), 8, 8, png::ColorType::Rgba, &[200; 256]);
    std::fs::write(root.join("ant/1.jpg"), jpeg_bytes()).unwrap();
    std::fs::write(root.join("ant/notes.txt"), "skipped").unwrap();
    let set = load(&DatasetSpec::ImageFolder { root }, 0, Some([3, 8, 8])).unwrap();
    assert_eq!((set.len(), set.classes), (4, 2));
    assert_eq!(set.labels, Some(vec![0, 0, 0, 1]));
    // Sorted file names: 1.jpg, 1.png, 2.png in `ant`.
    let jpeg = set.image(0);
    for (c, want) in [200i32, 40, 90].into_iter().enumerate() {
        assert!((i32::from(jpeg[c * 64 + 27]) - want).abs() <= 3, "channel {c}: {}", jpeg[c * 64 + 27]);
    }
    assert!(set.image(1).iter().all(|&p| p == 200), "alpha dropped");
    assert!(set.image(3).iter().all(|&p| p == 9));
}

#[test]
fn shipped_sets_have_the_documented_counts() {
    let shipped = |name: &str| load(&DatasetSpec::Shipped { name: name.into() }, 0, None).unwrap();
    for (name, n, classes) in [
        ("fashion_mnist_train", 30000, 10),
        ("fashion_mnist_test", 10000, 10),
        ("mnist", 2000, 10),
        ("animal_mnist", 2000, 10),
        ("textures", 243, 3),
    ] {
        let set = shipped(name);
        assert_eq!((set.name.as_str(), set.len(), set.shape, set.classes), (name, n, [1, 28, 28], classes));
        assert!(set.labels.as_ref().unwrap().iter().all(|&l| (0..classes as i64).contains(&l)));
        check_id_set(&set, classes).unwrap();
    }
    assert_eq!(shipped("fashion_mnist_train").class_counts(), vec![3000; 10]);
    assert_eq!(shipped("mnist").class_counts(), vec![200; 10]);
    let msg = err(load(&DatasetSpec::Shipped { name: "cifar".into() }, 0, None));
    assert!(msg.contains("cifar") && msg.contains("fashion_mnist_train"), "{msg}");
}

#[test]
fn noise_is_reproducible_and_kinds_differ() {
    let noise = |kind: &str, seed| {
        load(&DatasetSpec::Noise { kind: kind.into(), count: 50 }, seed, Some([1, 28, 28])).unwrap()
    };
    let (g, u) = (noise("gaussian", 7), noise("uniform", 7));
    assert_eq!((g.len(), g.shape, g.labels.clone()), (50, [1, 28, 28], None));
    assert_eq!(g, noise("gaussian", 7));
    assert_ne!(g.pixels, noise("gaussian", 8).pixels);
    assert_ne!(g.pixels, u.pixels);
    let stats = |s: &ImageSet| {
        let n = s.pixels.len() as f64;
        let mean = s.pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
        let var = s.pixels.iter().map(|&p| (f64::from(p) - mean).powi(2)).sum::<f64>() / n;
        (mean / 255.0, var.sqrt() / 255.0)
    };
    let ((gm, gs), (um, us)) = (stats(&g), stats(&u));
    assert!((gm - 0.5).abs() < 0.01 && (gs - 0.24).abs() < 0.01, "gaussian {gm} {gs}");
    assert!((um - 0.5).abs() < 0.01 && (us - 0.2887).abs() < 0.01, "uniform {um} {us}");
    let msg = err(load(&DatasetSpec::Noise { kind: "gaussian".into(), count: 5 }, 0, None));
    assert!(msg.contains("shape"), "{msg}");
}

/// A labelled set whose 1x1x2 images hold their own index (big-endian), to follow them.
fn indexed_set(counts: &[usize]) -> ImageSet {
    let labels: Vec<i64> = counts.iter().enumerate().flat_map(|(c, &n)| vec![c as i64; n]).collect();
    let pixels = (0..labels.len()).flat_map(|i| (i as u16).to_be_bytes()).collect();
    ImageSet { name: "indexed".into(), shape: [1, 1, 2], pixels, labels: Some(labels), classes: counts.len() }
}

fn ids(set: &ImageSet) -> Vec<usize> {
    (0..set.len()).map(|i| usize::from(u16::from_be_bytes([set.image(i)[0], set.image(i)[1]]))).collect()
}

#[test]
fn split_validation_is_balanced_disjoint_and_deterministic() {
    let set = indexed_set(&[50, 30, 20]);
    let (train, val) = split_validation(&set, 0.1, 3).unwrap();
    assert_eq!(val.class_counts(), vec![5, 3, 2]);
    assert_eq!(train.class_counts(), vec![45, 27, 18]);
    let mut all = [ids(&train), ids(&val)].concat();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>(), "disjoint and complete");
    assert_eq!(split_validation(&set, 0.1, 3).unwrap(), (train, val.clone()));
    assert_ne!(ids(&split_validation(&set, 0.1, 4).unwrap().1), ids(&val));

    let limited = limit_per_class(&set, 31).unwrap();
    assert_eq!(limited.class_counts(), vec![11, 10, 10]);
    assert_eq!(ids(&limited)[..11], (0..11).collect::<Vec<_>>());
    assert!(err(limit_per_class(&set, 2)).contains("train_limit"));
}

#[test]
fn batch_plan_is_a_deterministic_partial_permutation() {
    let plan = BatchPlan::epoch(103, 10, 5, 2);
    assert_eq!(plan.len(), 10);
    assert!(plan.iter().all(|b| b.len() == 10));
    let mut seen: Vec<usize> = plan.concat();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 100, "each index at most once");
    assert!(seen.iter().all(|&i| i < 103));
    assert_eq!(plan, BatchPlan::epoch(103, 10, 5, 2));
    assert_ne!(plan, BatchPlan::epoch(103, 10, 5, 3));
    assert_ne!(plan, BatchPlan::epoch(103, 10, 6, 2));
    assert!(BatchPlan::epoch(5, 0, 0, 0).is_empty());
}

fn small_set() -> Arc<ImageSet> {
    let mnist = load(&DatasetSpec::Shipped { name: "mnist".into() }, 0, None).unwrap();
    Arc::new(mnist.subset(&(0..64).collect::<Vec<_>>()).unwrap())
}

/// Every batch of `plan` (seed 11, epoch 1).
fn run(
    set: &Arc<ImageSet>,
    n: &Normalizer,
    plan: &[Vec<usize>],
    views: Option<Augmenter>,
    threads: usize,
) -> Batches {
    let options = BatchOptions { seed: 11, epoch: 1, views: views.map(ViewAugmenter::from), threads };
    Batches::new(set.clone(), n.clone(), plan.to_vec(), options).unwrap()
}

#[test]
fn two_view_batches_do_not_depend_on_threads() {
    let set = small_set();
    let normalizer = Normalizer::new(vec![0.13], vec![0.31]).unwrap();
    let plan = BatchPlan::epoch(set.len(), 8, 11, 1);
    let views = Some(Augmenter::from_config(&Default::default()));
    let two_views =
        |threads| run(&set, &normalizer, &plan, views, threads).map(Result::unwrap).collect::<Vec<_>>();
    let inline = two_views(0);
    assert_eq!(inline.len(), 8);
    let (a, b) = inline[0].views.as_ref().unwrap();
    assert_eq!(a.len(), 8 * 784);
    assert_ne!(a, b, "two different views");
    assert_eq!(
        inline[0].labels,
        inline[0].indices.iter().map(|&i| set.labels.as_ref().unwrap()[i]).collect::<Vec<_>>()
    );
    for threads in [1, 2, 3] {
        assert_eq!(two_views(threads), inline, "{threads} threads");
    }
    // Dropping a threaded stream early must not hang.
    assert!(run(&set, &normalizer, &BatchPlan::epoch(set.len(), 4, 0, 0), None, 2).next().unwrap().is_ok());
}

#[test]
fn a_failing_batch_reaches_the_consumer_as_an_error() {
    let mut set = (*small_set()).clone();
    set.labels.as_mut().unwrap().truncate(40);
    let set = Arc::new(set);
    let plan: Vec<Vec<usize>> = (0..8).map(|k| (k * 8..k * 8 + 8).collect()).collect();
    let normalizer = Normalizer::new(vec![0.5], vec![0.5]).unwrap();
    for threads in [0, 2] {
        let results: Vec<_> = run(&set, &normalizer, &plan, None, threads).collect();
        assert_eq!(results.len(), 6, "five batches, the error, then the end ({threads} threads)");
        assert!(results[..5].iter().all(Result::is_ok));
        let msg = results[5].as_ref().unwrap_err().to_string();
        assert!(msg.contains("image 40 has no label"), "{msg}");
    }
}

#[test]
fn augmentation_identity_flip_and_crop() {
    let set = small_set();
    let normalizer = Normalizer::new(vec![0.5], vec![0.25]).unwrap();
    let identity = Augmenter { crop_padding: 0, horizontal_flip: false };
    let batch = run(&set, &normalizer, &[vec![3, 9]], Some(identity), 0).next().unwrap().unwrap();
    let (a, b) = batch.views.unwrap();
    assert_eq!(a, batch.images);
    assert_eq!(b, batch.images);
    assert_eq!(batch.images[0], (0.0 / 255.0 - 0.5) / 0.25);

    let image: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
    let shape = [2, 3, 4];
    let flip = Augmenter { crop_padding: 0, horizontal_flip: true };
    let mirrored = flip.apply(&image, shape, ViewParams { dy: 0, dx: 0, flip: true });
    for (c, y, x) in (0..2).flat_map(|c| (0..3).flat_map(move |y| (0..4).map(move |x| (c, y, x)))) {
        assert_eq!(mirrored[c * 12 + y * 4 + x], image[c * 12 + y * 4 + 3 - x]);
    }
    // The random flip shows up as exactly the mirror (or the original) of the image.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let views: Vec<Vec<u8>> = (0..20).map(|_| flip.view(&image, shape, &mut rng)).collect();
    assert!(views.iter().all(|v| *v == image || *v == mirrored));
    assert!(views.contains(&mirrored) && views.contains(&image));

    let crop = Augmenter { crop_padding: 2, horizontal_flip: false };
    assert_eq!(crop.apply(&image, shape, ViewParams { dy: 2, dx: 2, flip: false }), image, "centred crop");
    // Offsets (0, 0) shift the image down-right by 2 and pad with zeros.
    let shifted = crop.apply(&image, shape, ViewParams { dy: 0, dx: 0, flip: false });
    assert_eq!(&shifted[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

    let rgb = Normalizer::new(vec![0.5; 3], vec![0.5; 3]).unwrap();
    let options = BatchOptions { seed: 1, epoch: 0, views: None, threads: 0 };
    let msg = err(Batches::new(set, rgb, vec![vec![0]], options).map(|_| ()));
    assert!(msg.contains("channel"), "{msg}");
}

#[test]
fn load_all_builds_the_default_run_data() {
    let data = load_all(&DataConfig::default(), 0).unwrap();
    assert_eq!((data.train.len(), data.validation.len(), data.test.len()), (27000, 3000, 10000));
    assert_eq!(data.validation.class_counts(), vec![300; 10]);
    let names: Vec<&str> = data.ood.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["mnist", "animal_mnist", "textures", "gaussian_noise", "uniform_noise"]);
    assert!(data.ood.iter().all(|s| s.shape == [1, 28, 28]));
    assert_eq!(data.ood[3].len(), 2000);
}
