//! The scenes generator: reproducible by seed, boxes inside the canvas and consistent with
//! the masks, overlap bounded, items drawn only from the split given.
mod common;
use common::*;
use gqcim::data::scenes::{generate, Background, SceneConfig};
use tch::{Device, Kind, Tensor};

/// Items: class k is a filled square whose intensity is 100 + 15k (so masks are easy to check).
fn items(classes: &[i64]) -> (Tensor, Tensor) {
    let n = classes.len() as i64;
    let img = Tensor::zeros([n, 1, 28, 28], (Kind::Uint8, Device::Cpu));
    for (i, k) in classes.iter().enumerate() {
        let _ = img.get(i as i64).narrow(1, 6, 16).narrow(2, 4, 20).fill_(100 + 15 * k);
    }
    (img, Tensor::from_slice(classes))
}

#[test]
fn scenes_are_reproducible_and_consistent() {
    let _rng = rng_lock();
    let (img, lab) = items(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let cfg = SceneConfig::default();
    let a = generate(&img, &lab, &cfg, 50, 7);
    let b = generate(&img, &lab, &cfg, 50, 7);
    let c = generate(&img, &lab, &cfg, 50, 8);
    assert_eq!(a.images.size(), vec![50, 1, 96, 96]);
    assert!(a.images.equal(&b.images) && a.masks.equal(&b.masks));
    assert!(!a.images.equal(&c.images));
    let mut total = 0;
    for (i, boxes) in a.boxes.iter().enumerate() {
        assert!(!boxes.is_empty() && boxes.len() <= 6);
        total += boxes.len();
        for (j, bx) in boxes.iter().enumerate() {
            assert!(
                bx.x1 >= 0.0
                    && bx.y1 >= 0.0
                    && bx.x2 <= 96.0
                    && bx.y2 <= 96.0
                    && bx.x2 > bx.x1
                    && bx.y2 > bx.y1
            );
            // A box holds mask pixels of its class unless a later item covers it.
            let region = a
                .masks
                .get(i as i64)
                .narrow(0, bx.y1 as i64, (bx.y2 - bx.y1) as i64)
                .narrow(1, bx.x1 as i64, (bx.x2 - bx.x1) as i64);
            let own = region.eq(bx.class + 1).sum(Kind::Int64).int64_value(&[]);
            if j + 1 == boxes.len() {
                assert!(own > 0, "last item has no mask pixels");
            }
            for other in &boxes[..j] {
                let iw = (bx.x2.min(other.x2) - bx.x1.max(other.x1)).max(0.0);
                let ih = (bx.y2.min(other.y2) - bx.y1.max(other.y1)).max(0.0);
                let inter = iw * ih;
                let u = (bx.x2 - bx.x1) * (bx.y2 - bx.y1)
                    + (other.x2 - other.x1) * (other.y2 - other.y1)
                    - inter;
                assert!(inter / u <= 0.3 + 1e-6, "overlap bound broken");
            }
        }
    }
    assert!(total > 100, "too few items placed: {total}");
    // Background pixels of a plain canvas are zero, item pixels are not.
    let bg = a.masks.eq(0);
    assert_eq!(a.images.squeeze_dim(1).masked_select(&bg).max().int64_value(&[]), 0);
}

#[test]
fn items_come_only_from_the_given_split() {
    let _rng = rng_lock();
    // "Train" items are classes 0..4, "test" items classes 5..9.
    let (tr, tl) = items(&[0, 1, 2, 3, 4]);
    let (te, tel) = items(&[5, 6, 7, 8, 9]);
    let cfg = SceneConfig { background: Background::Clutter, ..Default::default() };
    let train = generate(&tr, &tl, &cfg, 30, 1);
    let test = generate(&te, &tel, &cfg, 30, 1);
    assert!(train.boxes.iter().flatten().all(|b| b.class < 5));
    assert!(test.boxes.iter().flatten().all(|b| b.class >= 5));
    let t = train.boxes_tensor(6);
    assert_eq!(t.size(), vec![30, 6, 5]);
}
