//! The shared conv / linear layer and its per-layer weight path.
//!
//! Every conv and linear layer owns its fp32 master weight under the torchvision name and
//! sends its forward pass through a `WeightPath` chosen by the deployment config: identity
//! (digital fp32), a straight-through quantizer, or a programmed analog crossbar. Model code
//! never knows which one runs (mmcv's `build_conv_layer`, aihwkit's `convert_to_analog`,
//! without renaming the checkpoint keys). All layers of a network are listed in a
//! `LayerRegistry`, through which deployment code swaps paths after the model is built.
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use tch::nn::{self, Init, ModuleT};
use tch::{Kind, Tensor};

/// What a hooked layer computes with its (possibly transformed) weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerOp {
    Conv2d { stride: i64, padding: i64, dilation: i64, groups: i64 },
    Linear,
}

/// One conv or linear layer: its name (torchvision key prefix), operation, and parameters.
#[derive(Debug)]
pub struct LayerSpec {
    /// e.g. `layer1.0.conv1`; the weight's key is `<name>.weight`.
    pub name: String,
    pub op: LayerOp,
    /// fp32 master weight: conv [c_out, c_in/groups, k, k], linear [out, in].
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl LayerSpec {
    /// Applies the layer's operation with a given effective weight.
    /// xs: conv [b, c_in, h, w] -> [b, c_out, h', w']; linear [b, in] -> [b, out].
    pub fn apply(&self, xs: &Tensor, weight: &Tensor) -> Tensor {
        match self.op {
            LayerOp::Conv2d { stride, padding, dilation, groups } => xs.conv2d(
                weight,
                self.bias.as_ref(),
                [stride, stride],
                [padding, padding],
                [dilation, dilation],
                groups,
            ),
            LayerOp::Linear => xs.linear(weight, self.bias.as_ref()),
        }
    }

    pub fn numel(&self) -> i64 {
        self.weight.numel() as i64
    }

    pub fn shallow_clone(&self) -> LayerSpec {
        LayerSpec {
            name: self.name.clone(),
            op: self.op,
            weight: self.weight.shallow_clone(),
            bias: self.bias.as_ref().map(|b| b.shallow_clone()),
        }
    }
}

/// How a layer turns its master weight into the computation that runs.
pub trait WeightPath: Send + std::fmt::Debug + AsAny {
    /// The effective weight used in the forward pass.
    fn weight(&mut self, layer: &LayerSpec, train: bool) -> Tensor;

    /// The layer's forward pass; paths that model the periphery (DAC/ADC per tile) override it.
    fn forward(&mut self, layer: &LayerSpec, xs: &Tensor, train: bool) -> Tensor {
        let w = self.weight(layer, train);
        layer.apply(xs, &w)
    }

    /// The eval-mode forward pass followed by `then` (a BatchNorm on its running
    /// statistics, and a ReLU): here as their own ops; the periphery folds them into its
    /// digital back-scaling, as a chip's periphery applies them.
    fn forward_then(&mut self, layer: &LayerSpec, xs: &Tensor, then: &Epilogue) -> Tensor {
        then.apply(self.forward(layer, xs, false))
    }

    /// A short description for logs and results.json.
    fn describe(&self) -> String;

    /// Extra trainable tensors the path owns (LSQ step sizes), for the optimizer.
    fn trainable(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// Per-layer facts for results.json (quanta, MSE, conductances...).
    fn report(&self, _layer: &LayerSpec) -> serde_json::Value {
        serde_json::json!({ "path": self.describe() })
    }
}

/// Downcasting support, so deployment code can reach a concrete path (e.g. to reprogram a
/// crossbar) through the layer's slot.
pub trait AsAny {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

impl<T: std::any::Any> AsAny for T {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Digital fp32: the master weight as it is.
#[derive(Debug, Default)]
pub struct Identity;

impl WeightPath for Identity {
    fn weight(&mut self, layer: &LayerSpec, _train: bool) -> Tensor {
        layer.weight.shallow_clone()
    }

    fn describe(&self) -> String {
        "fp32".into()
    }
}

pub type PathSlot = Arc<Mutex<Box<dyn WeightPath>>>;

/// A conv or linear layer whose forward pass goes through its weight path.
#[derive(Debug)]
pub struct HookedLayer {
    spec: LayerSpec,
    path: PathSlot,
}

impl ModuleT for HookedLayer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        lock(&self.path).forward(&self.spec, xs, train)
    }
}

impl HookedLayer {
    /// The layer, its BatchNorm `bn` and (with `relu`) a ReLU: in training as three ops (the
    /// BN on batch statistics), in evaluation through the path's `forward_then`.
    pub fn forward_bn(&self, xs: &Tensor, bn: &BatchNorm2d, relu: bool, train: bool) -> Tensor {
        self.forward_epilogue(xs, Epilogue { bn, residual: None, relu }, train)
    }

    /// The last layer of a residual block on `ys`, its BatchNorm `bn`, the shortcut of the
    /// block's input `xs` added, then the ReLU. An identity shortcut (`projection` None)
    /// goes into the layer's epilogue: in evaluation on the crossbar the periphery adds it
    /// in its last pass over the output, as a chip's digital periphery would, with no
    /// separate add and ReLU. A projected one (`projection`: the block's 1x1 conv and BN) is
    /// computed after this layer, so that the layers draw their read noise in the order
    /// they always did.
    pub fn forward_block_end(
        &self,
        ys: &Tensor,
        bn: &BatchNorm2d,
        xs: &Tensor,
        projection: Option<impl FnOnce() -> Tensor>,
        train: bool,
    ) -> Tensor {
        match projection {
            None => {
                let then = Epilogue { bn, residual: Some(xs), relu: true };
                self.forward_epilogue(ys, then, train)
            }
            Some(project) => (self.forward_bn(ys, bn, false, train) + project()).relu(),
        }
    }

    fn forward_epilogue(&self, xs: &Tensor, then: Epilogue, train: bool) -> Tensor {
        if train {
            then.apply_t(self.forward_t(xs, true), true)
        } else {
            lock(&self.path).forward_then(&self.spec, xs, &then)
        }
    }
}

/// What follows a conv and its periphery in evaluation: a BatchNorm with its running
/// statistics, then the block's shortcut added when `residual` (same shape as the output),
/// then a ReLU when `relu`.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    pub bn: &'a BatchNorm2d,
    pub residual: Option<&'a Tensor>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// The BN (eval mode) and the ReLU as ops on the layer's output `y`.
    pub fn apply(&self, y: Tensor) -> Tensor {
        self.apply_t(y, false)
    }

    /// The BN (on batch statistics when `train`), the residual and the ReLU as ops.
    fn apply_t(&self, y: Tensor, train: bool) -> Tensor {
        let y = self.bn.forward_t(&y, train);
        let y = match self.residual {
            Some(r) => y + r,
            None => y,
        };
        if self.relu {
            y.relu()
        } else {
            y
        }
    }

    /// The BN as one multiply and one add per channel, y · scale + shift, with libtorch's
    /// formulas: scale = γ / √(var + ε), shift = β − mean · scale. ([c] each.)
    pub fn affine(&self) -> (Tensor, Tensor) {
        let bn = self.bn;
        let scale = (&bn.running_var + bn.eps).sqrt().reciprocal() * &bn.weight;
        let shift = &bn.bias - &bn.running_mean * &scale;
        (scale.detach(), shift.detach())
    }
}

fn lock(slot: &PathSlot) -> MutexGuard<'_, Box<dyn WeightPath>> {
    // A poisoned lock only means an earlier forward panicked; the path itself is still usable.
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle on one registered layer, for deployment code.
#[derive(Debug)]
pub struct LayerHandle {
    pub spec: LayerSpec,
    slot: PathSlot,
}

impl LayerHandle {
    pub fn set_path(&self, path: Box<dyn WeightPath>) {
        *lock(&self.slot) = path;
    }

    pub fn with_path<R>(&self, f: impl FnOnce(&mut dyn WeightPath) -> R) -> R {
        let mut g = lock(&self.slot);
        f(g.as_mut())
    }

    /// The layer's path slot itself (to swap a path out and back in).
    pub fn path_box(&self) -> MutexGuard<'_, Box<dyn WeightPath>> {
        lock(&self.slot)
    }

    pub fn report(&self) -> serde_json::Value {
        lock(&self.slot).report(&self.spec)
    }

    pub fn describe(&self) -> String {
        lock(&self.slot).describe()
    }

    pub fn trainable(&self) -> Vec<Tensor> {
        lock(&self.slot).trainable()
    }

    /// The weight the forward pass currently uses (eval mode).
    pub fn effective_weight(&self) -> Tensor {
        tch::no_grad(|| lock(&self.slot).weight(&self.spec, false))
    }
}

/// Every hooked layer of a network, in construction order (single-threaded handle; the
/// layers themselves hold thread-safe slots), and whether the network is training.
#[derive(Debug, Clone, Default)]
pub struct LayerRegistry(Rc<RefCell<Vec<Rc<LayerHandle>>>>, Rc<std::cell::Cell<bool>>);

impl LayerRegistry {
    /// Marks the network as training (fine-tuning loops) or evaluating; the crossbar
    /// refuses to be programmed while training.
    pub fn set_training(&self, training: bool) {
        self.1.set(training);
    }

    pub fn is_training(&self) -> bool {
        self.1.get()
    }

    fn register(&self, spec: &LayerSpec) -> PathSlot {
        let slot: PathSlot = Arc::new(Mutex::new(Box::new(Identity)));
        let handle = LayerHandle { spec: spec.shallow_clone(), slot: slot.clone() };
        self.0.borrow_mut().push(Rc::new(handle));
        slot
    }

    pub fn layers(&self) -> Vec<Rc<LayerHandle>> {
        self.0.borrow().clone()
    }

    pub fn get(&self, name: &str) -> Option<Rc<LayerHandle>> {
        self.layers().into_iter().find(|l| l.spec.name == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.layers().iter().map(|l| l.spec.name.clone()).collect()
    }

    /// Puts every layer back on the digital fp32 path.
    pub fn reset_paths(&self) {
        for l in self.layers() {
            l.set_path(Box::new(Identity));
        }
    }
}

fn layer_name(p: &nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
}

/// A conv2d through the weight hook, initialised as torchvision's ResNet does
/// (kaiming normal, fan_out, gain sqrt(2)); no bias, as every conv here is followed by BN.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    p: nn::Path,
    reg: &LayerRegistry,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    padding: i64,
    dilation: i64,
) -> HookedLayer {
    conv2d_grouped(p, reg, c_in, c_out, k, stride, padding, dilation, 1, false)
}

#[allow(clippy::too_many_arguments)]
pub fn conv2d_grouped(
    p: nn::Path,
    reg: &LayerRegistry,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    padding: i64,
    dilation: i64,
    groups: i64,
    bias: bool,
) -> HookedLayer {
    let fan_out = (c_out * k * k) as f64;
    let std = (2.0 / fan_out).sqrt();
    let weight =
        p.var("weight", &[c_out, c_in / groups, k, k], Init::Randn { mean: 0.0, stdev: std });
    let bias = bias.then(|| {
        let bound = 1.0 / ((c_in / groups * k * k) as f64).sqrt();
        p.var("bias", &[c_out], Init::Uniform { lo: -bound, up: bound })
    });
    let spec = LayerSpec {
        name: layer_name(&p),
        op: LayerOp::Conv2d { stride, padding, dilation, groups },
        weight,
        bias,
    };
    let path = reg.register(&spec);
    HookedLayer { spec, path }
}

/// A linear layer through the weight hook, initialised as PyTorch's nn.Linear.
pub fn linear(p: nn::Path, reg: &LayerRegistry, c_in: i64, c_out: i64) -> HookedLayer {
    let bound = 1.0 / (c_in as f64).sqrt();
    let weight = p.var("weight", &[c_out, c_in], Init::Uniform { lo: -bound, up: bound });
    let bias = Some(p.var("bias", &[c_out], Init::Uniform { lo: -bound, up: bound }));
    let spec = LayerSpec { name: layer_name(&p), op: LayerOp::Linear, weight, bias };
    let path = reg.register(&spec);
    HookedLayer { spec, path }
}

/// BatchNorm2d as PyTorch initialises and names it (gamma 1, beta 0, running stats and
/// `num_batches_tracked`, so torchvision state dicts load with no missing or extra keys).
/// It stays digital: in a CACIM system BN runs in the periphery.
#[derive(Debug)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    num_batches_tracked: Tensor,
    momentum: f64,
    pub eps: f64,
}

/// The running-statistics momentum of every BatchNorm2d (PyTorch's default); BatchNorm
/// re-estimation after quantization recovers batch statistics from it.
pub const BN_MOMENTUM: f64 = 0.1;

pub fn batch_norm2d(p: nn::Path, c: i64) -> BatchNorm2d {
    let tracked = Tensor::zeros([], (Kind::Int64, p.device()));
    BatchNorm2d {
        weight: p.var("weight", &[c], Init::Const(1.0)),
        bias: p.var("bias", &[c], Init::Const(0.0)),
        running_mean: p.zeros_no_train("running_mean", &[c]),
        running_var: p.ones_no_train("running_var", &[c]),
        num_batches_tracked: p.add("num_batches_tracked", tracked, false),
        momentum: BN_MOMENTUM,
        eps: 1e-5,
    }
}

impl ModuleT for BatchNorm2d {
    /// xs: [b, c, h, w] -> [b, c, h, w]; updates the running statistics in train mode.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let _ = self.num_batches_tracked.shallow_clone().g_add_scalar_(1);
            });
        }
        Tensor::batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            self.momentum,
            self.eps,
            true,
        )
    }
}
