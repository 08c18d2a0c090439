//! Datasets held as whole tensors on the training device, with seeded batching,
//! normalisation and tensor-side augmentation.
pub mod augment;
pub mod cifar;
pub mod coco_json;
pub mod coco_out;
pub mod detection_sets;
pub mod idx;
pub mod jitter;
pub mod rgb;
pub mod scenes;
pub mod seg_sets;
pub mod voc;
pub mod voc_seg;

use crate::config::{DataConfig, DatasetKind};
use crate::error::{data_err, invalid, Result};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// An image classification split: uint8 images [n, c, h, w] and int64 labels [n].
#[derive(Debug)]
pub struct Dataset {
    pub images: Tensor,
    pub labels: Tensor,
    pub num_classes: i64,
}

impl Dataset {
    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn channels(&self) -> i64 {
        self.images.size()[1]
    }

    pub fn shallow_clone(&self) -> Dataset {
        Dataset {
            images: self.images.shallow_clone(),
            labels: self.labels.shallow_clone(),
            num_classes: self.num_classes,
        }
    }

    pub fn to_device(&self, device: Device) -> Dataset {
        Dataset {
            images: self.images.to_device(device),
            labels: self.labels.to_device(device),
            num_classes: self.num_classes,
        }
    }

    /// Keeps the first n samples (0 = all).
    pub fn limit(self, n: usize) -> Dataset {
        if n == 0 || n as i64 >= self.len() {
            return self;
        }
        Dataset {
            images: self.images.narrow(0, 0, n as i64),
            labels: self.labels.narrow(0, 0, n as i64),
            num_classes: self.num_classes,
        }
    }
}

/// The dataset's usual per-channel statistics on the [0, 1] scale.
pub fn default_stats(kind: DatasetKind) -> (Vec<f64>, Vec<f64>) {
    match kind {
        DatasetKind::FashionMnist => (vec![0.2860], vec![0.3530]),
        DatasetKind::Mnist => (vec![0.1307], vec![0.3081]),
        DatasetKind::Cifar10 => (vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616]),
        DatasetKind::Cifar100 => (vec![0.5071, 0.4865, 0.4409], vec![0.2673, 0.2564, 0.2762]),
    }
}

/// Maps uint8 images to normalised float: (x / 255 - mean) / std, per channel.
#[derive(Debug)]
pub struct Normalizer {
    mean: Tensor,
    std: Tensor,
}

impl Normalizer {
    pub fn new(cfg: &DataConfig, device: Device) -> Normalizer {
        let (m, s) = default_stats(cfg.dataset);
        let mean = cfg.mean.clone().unwrap_or(m);
        let std = cfg.std.clone().unwrap_or(s);
        let c = mean.len() as i64;
        Normalizer {
            mean: Tensor::from_slice(&mean).to_kind(Kind::Float).view([1, c, 1, 1]).to(device),
            std: Tensor::from_slice(&std).to_kind(Kind::Float).view([1, c, 1, 1]).to(device),
        }
    }

    /// x: uint8 [b, c, h, w] -> float [b, c, h, w] on the [0, 1] scale.
    pub fn to_unit(x: &Tensor) -> Tensor {
        x.to_kind(Kind::Float) / 255.0
    }

    /// x: float [b, c, h, w] on the [0, 1] scale -> normalised.
    pub fn normalize(&self, x: &Tensor) -> Tensor {
        (x - &self.mean) / &self.std
    }
}

fn install_hint(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::FashionMnist => {
            "install it with `make data` (as root: apt-get install dataset-fashion-mnist), \
             or point data.root at a folder holding the four IDX files"
        }
        DatasetKind::Mnist => {
            "point data.root at a folder holding train-images-idx3-ubyte[.gz], \
             train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
        }
        DatasetKind::Cifar10 => {
            "point data.root at the extracted cifar-10-batches-bin folder \
             (data_batch_1.bin .. data_batch_5.bin, test_batch.bin)"
        }
        DatasetKind::Cifar100 => {
            "point data.root at the extracted cifar-100-binary folder (train.bin, test.bin)"
        }
    }
}

/// Finds `<root>/<stem>` or `<root>/<stem>.gz`.
fn find_file(root: &Path, stem: &str, kind: DatasetKind) -> Result<PathBuf> {
    for cand in [root.join(stem), root.join(format!("{stem}.gz"))] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    Err(data_err(root.join(format!("{stem}[.gz]")), format!("not found; {}", install_hint(kind))))
}

/// Loads an IDX image file and its label file, checking that they agree.
pub fn load_idx_pair(images: &Path, labels: &Path, num_classes: i64) -> Result<Dataset> {
    let im = idx::read_idx(images, 3)?;
    let lb = idx::read_idx(labels, 1)?;
    let (n, h, w) = (im.dims[0], im.dims[1], im.dims[2]);
    if lb.dims[0] != n {
        return Err(data_err(
            labels,
            format!(
                "label count {} does not match the image count {n} of {}",
                lb.dims[0],
                images.display()
            ),
        ));
    }
    if let Some(bad) = lb.data.iter().find(|&&l| l as i64 >= num_classes) {
        return Err(data_err(
            labels,
            format!("label {bad} out of range (expected < {num_classes})"),
        ));
    }
    Ok(Dataset {
        images: Tensor::from_slice(&im.data).view([n as i64, 1, h as i64, w as i64]),
        labels: Tensor::from_slice(&lb.data).to_kind(Kind::Int64),
        num_classes,
    })
}

fn cifar_dataset(files: &[PathBuf], label_bytes: usize, classes: i64) -> Result<Dataset> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in files {
        let (p, l) = cifar::read_cifar_file(f, label_bytes, classes as u8)?;
        pixels.extend(p);
        labels.extend(l);
    }
    let n = labels.len() as i64;
    Ok(Dataset {
        images: Tensor::from_slice(&pixels).view([n, 3, 32, 32]),
        labels: Tensor::from_slice(&labels).to_kind(Kind::Int64),
        num_classes: classes,
    })
}

fn existing(root: &Path, name: &str, kind: DatasetKind) -> Result<PathBuf> {
    let p = root.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(data_err(p, format!("not found; {}", install_hint(kind))))
    }
}

/// Loads the train or test split named by the data config (on the CPU).
pub fn load_split(cfg: &DataConfig, train: bool) -> Result<Dataset> {
    let root = &cfg.root;
    let ds = match cfg.dataset {
        DatasetKind::FashionMnist | DatasetKind::Mnist => {
            let prefix = if train { "train" } else { "t10k" };
            let images = find_file(root, &format!("{prefix}-images-idx3-ubyte"), cfg.dataset)?;
            let labels = find_file(root, &format!("{prefix}-labels-idx1-ubyte"), cfg.dataset)?;
            load_idx_pair(&images, &labels, 10)?
        }
        DatasetKind::Cifar10 => {
            let names: Vec<String> = if train {
                (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
            } else {
                vec!["test_batch.bin".into()]
            };
            let files =
                names.iter().map(|n| existing(root, n, cfg.dataset)).collect::<Result<Vec<_>>>()?;
            cifar_dataset(&files, 1, 10)?
        }
        DatasetKind::Cifar100 => {
            let f = existing(root, if train { "train.bin" } else { "test.bin" }, cfg.dataset)?;
            cifar_dataset(&[f], 2, 100)?
        }
    };
    let ds = ds.limit(if train { cfg.train_limit } else { cfg.test_limit });
    check_split(&ds, if train { "training" } else { "test" }, root)?;
    Ok(ds)
}

/// A split must hold at least one image of at least 1 x 1 pixels: an empty split divides
/// by zero in the batch arithmetic, and a 0 x 0 image has nothing to convolve.
pub fn check_split(ds: &Dataset, which: &str, root: &Path) -> Result<()> {
    let size = ds.images.size();
    if ds.is_empty() {
        return Err(data_err(root, format!("the {which} split has no images")));
    }
    if size.len() != 4 || size[2] < 1 || size[3] < 1 {
        return Err(data_err(
            root,
            format!("the {which} images have shape {size:?}; expected [n, c, h, w] with h, w >= 1"),
        ));
    }
    Ok(())
}

/// The network is trained on one image size and tested on the same one.
pub fn check_same_image_size(train: &Dataset, test: &Dataset, root: &Path) -> Result<()> {
    let (a, b) = (&train.images.size()[1..], &test.images.size()[1..]);
    if a != b {
        return Err(data_err(
            root,
            format!("training images are {a:?} (c, h, w) but test images are {b:?}"),
        ));
    }
    Ok(())
}

/// Checks that the data fits the model (channels, classes); names the config field.
pub fn check_against_model(ds: &Dataset, in_channels: i64, num_classes: i64) -> Result<()> {
    if ds.channels() != in_channels {
        return Err(invalid(
            "model.in_channels",
            format!("is {in_channels} but the dataset images have {} channels", ds.channels()),
        ));
    }
    if ds.num_classes > num_classes {
        return Err(invalid(
            "model.num_classes",
            format!("is {num_classes} but the dataset has {} classes", ds.num_classes),
        ));
    }
    Ok(())
}

/// Index batches for one epoch: a permutation drawn from the global generator (seeded per
/// epoch by the caller) cut into full batches; the last partial batch is dropped so that
/// BatchNorm never sees a batch of one.
pub fn epoch_batches(n: i64, batch_size: i64, device: Device) -> Vec<Tensor> {
    let perm = Tensor::randperm(n, (Kind::Int64, device));
    let bs = batch_size.min(n);
    let count = n / bs;
    (0..count).map(|i| perm.narrow(0, i * bs, bs)).collect()
}

/// Reads a user-supplied data file of at most `max_bytes` into memory: the size is checked
/// before reading and the read stops one byte past the limit, because devices and pipes
/// (`/dev/zero`) report a size of 0 and never end. Errors name the file.
pub fn read_bounded(path: &Path, max_bytes: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let too_big = || data_err(path, format!("larger than {} MiB; not a {what}?", max_bytes >> 20));
    let file =
        std::fs::File::open(path).map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) > max_bytes {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big());
    }
    Ok(bytes)
}

/// [`read_bounded`] for text files (UTF-8).
pub fn read_text_bounded(path: &Path, max_bytes: u64, what: &str) -> Result<String> {
    String::from_utf8(read_bounded(path, max_bytes, what)?)
        .map_err(|e| data_err(path, format!("not UTF-8 text ({e}); not a {what}?")))
}

/// One annotation file (VOC XML, YOLO txt): real ones are a few KiB.
pub const MAX_ANNOTATION_BYTES: u64 = 16 << 20;
/// A COCO-style JSON (ground truth or detections): COCO's own train2017 instances are 450 MB.
pub const MAX_COCO_JSON_BYTES: u64 = 2 << 30;
/// A CIFAR binary file: the largest is CIFAR-100's train.bin, 50,000 records of 3,074 bytes.
pub const MAX_CIFAR_FILE_BYTES: u64 = 50_000 * 3_074;
