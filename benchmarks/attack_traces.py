"""Query traces for attack-detection benchmarks: benign, attack and extraction clients.

Every client is an ask/tell program, like the project's attacks (`service/probes/black_box`):
a generator that yields the rows of its next request and receives the model's scores
(rows, classes) for them. The same programs therefore run offline against a local model
(`record_trace`, used by `benchmarks.attack_detection`) and through a real client against a
live endpoint (the live-relay benchmark drives `ClientSpec.start()` with answers from the
relay, one RPC per yielded batch, with the client's identity in a header).

Clients:
- benign: replays held-out rows one request at a time; a share of requests are exact
  retries of the previous request, and a share are bursts of augmented near-duplicates of
  a recent row (a shift of one pixel, Gaussian noise, or both: what test-time augmentation
  and re-encoded uploads send);
- attack: the project's Square Attack (L-inf, L2) and HopSkipJump, and an NES attack
  written here, each attacking several images one after the other;
- extraction: uniform random inputs, or Jacobian-based synthetic augmentation (Papernot et
  al. 2017) grown from a few seed rows with a substitute fitted to the answers.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from service.probes.black_box import AttackPlan, AttackResult, margins

#: A client program: yields request rows (n, d), receives scores (n, classes), returns notes.
ClientProgram = Generator[np.ndarray, np.ndarray, dict[str, Any]]


@dataclass(frozen=True)
class ClientSpec:
    """One client of a trace: who it is, what it does, and how to start its program."""

    name: str
    kind: str
    """"benign", "attack" or "extraction"."""
    family: str
    """What program: "benign", "square_linf", "square_l2", "hopskipjump", "nes", ..."""
    start: Callable[[], ClientProgram]


@dataclass(frozen=True)
class Request:
    """One request of a trace: the client that sent it and its rows (float32)."""

    client: str
    rows: np.ndarray


@dataclass
class Trace:
    """Requests in the order they reached the model, and what each client's program noted."""

    requests: list[Request] = field(default_factory=list)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def queries_of(self, client: str) -> int:
        return sum(len(r.rows) for r in self.requests if r.client == client)


def record_trace(
    clients: Sequence[ClientSpec], scores: Callable[[np.ndarray], np.ndarray], seed: int
) -> Trace:
    """Runs the clients against `scores` offline, interleaving their requests at random.

    At each step one client still running is drawn uniformly and sends its next request,
    so a long attack and many short benign sessions overlap as they would on a server.
    """
    rng = np.random.default_rng(seed)
    trace = Trace()
    running: dict[str, tuple[ClientProgram, np.ndarray]] = {}
    for spec in clients:
        program = spec.start()
        try:
            running[spec.name] = (program, next(program))
        except StopIteration as stop:
            trace.notes[spec.name] = dict(stop.value or {})
    while running:
        names = list(running)
        name = names[int(rng.integers(len(names)))]
        program, rows = running[name]
        rows32 = np.ascontiguousarray(rows, dtype=np.float32)
        trace.requests.append(Request(name, rows32))
        try:
            running[name] = (program, program.send(np.asarray(scores(rows32))))
        except StopIteration as stop:
            trace.notes[name] = dict(stop.value or {})
            del running[name]
    return trace


# ---------------------------------------------------------------------------- benign
@dataclass(frozen=True)
class BenignSettings:
    """How benign clients behave; shares are per request."""

    queries: int = 400
    retry_share: float = 0.05
    augment_share: float = 0.05
    max_variants: int = 3
    noise_std: float = 0.03
    """Gaussian noise of an augmented copy, as a share of the value range."""


def augment(
    row: np.ndarray,
    image_shape: tuple[int, int],
    value_range: tuple[float, float],
    noise_std: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A natural near-duplicate of `row`: a one-pixel shift, Gaussian noise, or both."""
    lo, hi = value_range
    img = row.reshape(image_shape).astype(np.float64)
    how = int(rng.integers(3))
    if how in (0, 2):
        axis = int(rng.integers(2))
        step = int(rng.choice([-1, 1]))
        img = ndimage.shift(img, (step, 0) if axis == 0 else (0, step), order=0, cval=lo)
    if how in (1, 2):
        img = img + rng.normal(0.0, noise_std * (hi - lo), size=img.shape)
    return np.clip(img, lo, hi).reshape(-1)


def benign_program(
    pool: np.ndarray,
    image_shape: tuple[int, int],
    value_range: tuple[float, float],
    settings: BenignSettings,
    seed: int,
) -> ClientProgram:
    """Replays rows of `pool` (without replacement, then again), with retries and variants."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    cursor = 0
    sent = 0
    previous: np.ndarray | None = None
    recent: list[np.ndarray] = []
    retries = variants = 0
    while sent < settings.queries:
        u = rng.uniform()
        if previous is not None and u < settings.retry_share:
            batch = previous
            retries += len(batch)
        elif recent and u < settings.retry_share + settings.augment_share:
            source = recent[int(rng.integers(len(recent)))]
            k = int(rng.integers(1, settings.max_variants + 1))
            batch = np.stack(
                [
                    augment(source, image_shape, value_range, settings.noise_std, rng)
                    for _ in range(k)
                ]
            )
            variants += k
        else:
            if cursor == len(order):
                order, cursor = rng.permutation(len(pool)), 0
            batch = pool[order[cursor]][None, :]
            cursor += 1
            recent = [*recent[-7:], batch[0]]
        yield batch
        previous = batch
        sent += len(batch)
    return {"queries": sent, "retries": retries, "variants": variants}


# ---------------------------------------------------------------------------- attacks
@dataclass(frozen=True)
class NesAttack:
    """Untargeted L-inf attack with NES gradient estimates (Ilyas et al. 2018), score-based.

    Each iteration queries the current point once (to check success) and `samples`
    antithetic Gaussian probes at distance `sigma` (share of the value range), estimates the
    gradient of the margin and takes a signed step of `step` (share of the range), projected
    on the `eps` ball. Written here as the benchmark's gradient-estimation attack; it keeps
    the ask/tell contract of `service/probes/black_box`.
    """

    eps: float
    max_queries: int = 1000
    samples: int = 50
    sigma: float = 0.001
    step: float = 0.01
    """Signed step per iteration, as a share of the value range."""
    value_range: tuple[float, float] = (0.0, 1.0)
    seed: int = 0

    def plan(self, x: np.ndarray, y: np.ndarray) -> AttackPlan:
        lo, hi = self.value_range
        span = hi - lo
        rng = np.random.default_rng(self.seed)
        clean = x.astype(np.float64)
        n, d = clean.shape
        y = np.asarray(y, dtype=np.int64)
        half = self.samples // 2
        adv = clean.copy()
        queries = np.zeros(n, dtype=np.int64)
        success = np.zeros(n, dtype=bool)
        clean_correct = np.zeros(n, dtype=bool)
        for i in range(n):
            first = True
            while queries[i] + 1 + 2 * half <= self.max_queries:
                margin = margins((yield adv[i : i + 1].astype(np.float32)), y[i : i + 1])[0]
                queries[i] += 1
                if first:
                    clean_correct[i] = margin > 0
                    first = False
                if margin < 0:
                    success[i] = clean_correct[i]
                    break
                u = rng.normal(size=(half, d))
                probes = np.concatenate(
                    [adv[i] + self.sigma * span * u, adv[i] - self.sigma * span * u]
                )
                m = margins((yield probes.astype(np.float32)), np.full(2 * half, y[i]))
                queries[i] += 2 * half
                grad = ((m[:half] - m[half:])[:, None] * u).sum(axis=0)
                adv[i] = adv[i] - self.step * span * np.sign(grad)
                adv[i] = np.clip(np.clip(adv[i], clean[i] - self.eps, clean[i] + self.eps), lo, hi)
        distance = np.abs(adv - clean).max(axis=1)
        return AttackResult(adv.astype(np.float32), success, queries, clean_correct, distance)


def attack_program(
    make_plan: Callable[[np.ndarray, np.ndarray, int], AttackPlan],
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
) -> ClientProgram:
    """Attacks the rows of `x` one after the other; notes each image's outcome and queries."""
    outcomes: list[dict[str, Any]] = []
    sent = 0
    for i in range(len(x)):
        plan = make_plan(x[i : i + 1], y[i : i + 1], seed * 1000 + i)
        try:
            rows = next(plan)
            while True:
                answers = yield rows
                sent += len(rows)
                rows = plan.send(answers)
        except StopIteration as stop:
            result: AttackResult = stop.value
        outcomes.append(
            {
                "start": sent - int(result.queries[0]),
                "queries": int(result.queries[0]),
                "success": bool(result.success[0]),
            }
        )
    return {"queries": sent, "images": outcomes}


# ---------------------------------------------------------------------------- extraction
def uniform_extraction_program(
    n_features: int, value_range: tuple[float, float], queries: int, batch: int, seed: int
) -> ClientProgram:
    """Uniform random inputs over the value range, `batch` rows per request."""
    rng = np.random.default_rng(seed)
    lo, hi = value_range
    sent = 0
    while sent < queries:
        k = min(batch, queries - sent)
        yield rng.uniform(lo, hi, size=(k, n_features))
        sent += k
    return {"queries": sent}


def synthetic_extraction_program(
    seeds: np.ndarray,
    value_range: tuple[float, float],
    queries: int,
    batch: int,
    step: float,
    seed: int,
) -> ClientProgram:
    """Jacobian-based dataset augmentation (Papernot et al. 2017) with a softmax substitute.

    Starts from a few seed rows; each round labels the current set through the model, fits a
    linear softmax substitute to the answers and adds x + step * sign(d substitute score of
    the answered class / dx) for every row, doubling the set until `queries` were sent.
    `step` is a share of the value range.
    """
    rng = np.random.default_rng(seed)
    lo, hi = value_range
    span = hi - lo
    known = np.asarray(seeds, dtype=np.float64)
    labels = np.zeros(0, dtype=np.int64)
    pending = known.copy()
    sent = 0
    weights: np.ndarray | None = None
    while sent < queries and len(pending):
        got: list[np.ndarray] = []
        for start in range(0, len(pending), batch):
            part = pending[start : start + batch][: queries - sent]
            if not len(part):
                break
            scores = yield part
            got.append(np.argmax(scores, axis=1))
            sent += len(part)
        answered = np.concatenate(got) if got else np.zeros(0, dtype=np.int64)
        labels = np.concatenate([labels, answered])
        rows = known[: len(labels)]
        weights = _fit_softmax((rows - lo) / span, labels, weights, rng)
        # d(score of class c)/dx of a linear softmax substitute is W[:, c] minus the
        # probability-weighted mean column; its sign is what the augmentation steps along.
        z = (rows - lo) / span @ weights
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = weights[:, labels].T - p @ weights.T
        pending = np.clip(rows + step * span * np.sign(grad), lo, hi)
        known = np.concatenate([rows, pending])
    return {"queries": sent}


def _fit_softmax(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """A few hundred gradient steps of multinomial logistic regression (10 classes)."""
    n, d = x.shape
    w = rng.normal(scale=0.01, size=(d, 10)) if weights is None else weights
    onehot = np.eye(10)[y]
    for _ in range(200):
        z = x @ w
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        w = w - 0.5 * (x.T @ (p - onehot) / n + 1e-3 * w)
    return np.asarray(w)


# ---------------------------------------------------------------------------- setups
@dataclass(frozen=True)
class ModelSetup:
    """A model under attack and its data: what the clients of a trace need to run."""

    name: str
    scores: Callable[[np.ndarray], np.ndarray]
    """rows (n, d) float32 -> class scores (n, classes), as the served model answers."""
    value_range: tuple[float, float]
    image_shape: tuple[int, int]
    reference: np.ndarray
    """Rows the guard is fitted on (the model's training rows: what an operator holds)."""
    pools: dict[str, tuple[np.ndarray, np.ndarray]]
    """Held-out rows and labels by split: "validation" to choose settings, "test" to score."""
    eps_linf: float
    eps_l2: float


def digits_setup(model_dir: Any) -> ModelSetup:
    """The bundled demo model (scikit-learn digits, 8x8, 0-16) behind onnxruntime."""
    from service.modelserver.demo_model import build_demo_model, load_demo_data
    from service.probes.onnx_model import OnnxClassifier

    model = OnnxClassifier(build_demo_model(model_dir, "digits", seed=0))
    data = load_demo_data("digits", seed=0)
    return ModelSetup(
        name="digits",
        scores=model.scores,
        value_range=(0.0, data.pixel_max),
        image_shape=data.image_shape,
        reference=data.x_train.astype(np.float64),
        pools={
            "validation": (data.x_reference.astype(np.float64), data.y_reference),
            "test": (data.x_test.astype(np.float64), data.y_test),
        },
        # as benchmarks.probes: 2/16 = 0.125 in L-inf, 8/16 in L2 over 64 pixels
        eps_linf=2.0,
        eps_l2=8.0,
    )


def mnist_setup() -> ModelSetup:
    """The MNIST 5k MLP of `benchmarks.datasets` (28x28, 0-255), scored in numpy."""
    from benchmarks.datasets import MnistMlp, mnist_split

    split = mnist_split(seed=0)
    model = MnistMlp(seed=0).fit(split.x_train, split.y_train)
    return ModelSetup(
        name="mnist",
        scores=lambda rows: model.predict_proba(np.asarray(rows, dtype=np.float64)),
        value_range=(0.0, 255.0),
        image_shape=(28, 28),
        reference=split.x_train,
        pools={"validation": (split.x_val, split.y_val), "test": (split.x_test, split.y_test)},
        # the usual MNIST budgets: 0.3 in L-inf, 2.0 in L2 on the unit scale
        eps_linf=0.3 * 255.0,
        eps_l2=2.0 * 255.0,
    )


@dataclass(frozen=True)
class TraceScale:
    """How many clients of each kind a trace holds, and how long they run."""

    benign_clients: int = 60
    benign_queries: int = 400
    attack_clients: int = 10
    images_per_client: int = 5
    queries_per_image: int = 500
    extraction_clients: int = 5
    extraction_queries: int = 300


ATTACK_FAMILIES = ("square_linf", "square_l2", "hopskipjump", "nes")
EXTRACTION_FAMILIES = ("extraction_uniform", "extraction_synthetic")


def attack_plans(
    setup: ModelSetup, budget: int
) -> dict[str, Callable[[np.ndarray, np.ndarray, int], AttackPlan]]:
    """The four attack families, each a factory of one image's ask/tell plan."""
    from service.probes.hopskipjump import HopSkipJump
    from service.probes.square_attack import SquareAttack

    vr, shape = setup.value_range, setup.image_shape
    span = vr[1] - vr[0]

    def square(norm: str, eps: float) -> Callable[[np.ndarray, np.ndarray, int], AttackPlan]:
        def make(x: np.ndarray, y: np.ndarray, seed: int) -> AttackPlan:
            attack = SquareAttack(
                eps=eps,
                max_queries=budget,
                norm=norm,  # type: ignore[arg-type]
                image_shape=shape,
                value_range=vr,
                seed=seed,
            )
            return attack.plan(x, y)

        return make

    def hopskipjump(x: np.ndarray, y: np.ndarray, seed: int) -> AttackPlan:
        return HopSkipJump(eps=setup.eps_l2, max_queries=budget, value_range=vr, seed=seed).plan(
            x, y
        )

    def nes(x: np.ndarray, y: np.ndarray, seed: int) -> AttackPlan:
        attack = NesAttack(
            eps=setup.eps_linf,
            max_queries=budget,
            step=setup.eps_linf / span / 10.0,
            value_range=vr,
            seed=seed,
        )
        return attack.plan(x, y)

    return {
        "square_linf": square("linf", setup.eps_linf),
        "square_l2": square("l2", setup.eps_l2),
        "hopskipjump": hopskipjump,
        "nes": nes,
    }


def build_clients(setup: ModelSetup, split: str, scale: TraceScale, seed: int) -> list[ClientSpec]:
    """Benign, attack and extraction clients on the rows of one split, all seeded from `seed`.

    Attack clients attack rows of the split the model classifies correctly (an attack on a
    row the model already gets wrong ends after one query); extraction seeds come from the
    split too. Another `split` or `seed` gives disjoint rows or other random draws.
    """
    x, y = setup.pools[split]
    rng = np.random.default_rng([seed, 17])
    n_features = x.shape[1]
    clients: list[ClientSpec] = []
    benign = BenignSettings(queries=scale.benign_queries)
    for c in range(scale.benign_clients):
        s = int(rng.integers(2**31))
        clients.append(
            ClientSpec(
                f"benign-{c:03d}",
                "benign",
                "benign",
                lambda s=s: benign_program(x, setup.image_shape, setup.value_range, benign, s),
            )
        )
    correct = np.flatnonzero(np.argmax(setup.scores(x.astype(np.float32)), axis=1) == y)
    plans = attack_plans(setup, scale.queries_per_image)
    for family in ATTACK_FAMILIES:
        for c in range(scale.attack_clients):
            rows = rng.choice(correct, size=scale.images_per_client, replace=False)
            s = int(rng.integers(2**31))
            clients.append(
                ClientSpec(
                    f"{family}-{c:02d}",
                    "attack",
                    family,
                    lambda m=plans[family], r=rows, s=s: attack_program(m, x[r], y[r], s),
                )
            )
    for c in range(scale.extraction_clients):
        s = int(rng.integers(2**31))
        seeds = x[rng.choice(len(x), size=10, replace=False)]
        clients.append(
            ClientSpec(
                f"extraction_uniform-{c:02d}",
                "extraction",
                "extraction_uniform",
                lambda s=s: uniform_extraction_program(
                    n_features, setup.value_range, scale.extraction_queries, 10, s
                ),
            )
        )
        clients.append(
            ClientSpec(
                f"extraction_synthetic-{c:02d}",
                "extraction",
                "extraction_synthetic",
                lambda s=s, seeds=seeds: synthetic_extraction_program(
                    seeds, setup.value_range, scale.extraction_queries, 10, 0.1, s
                ),
            )
        )
    return clients
