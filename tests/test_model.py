"""LatentLM model: packing, losses, release round trip, and cached interleaved decoding."""

import pytest
import torch

from latentlm.config import load_config
from latentlm.head import HeadConfig
from latentlm.model import LatentLM, LatentLMConfig
from latentlm.sequence import Latents, TokenLayout, Tokens, pack
from latentlm.transformer import TransformerConfig


def tiny_config(**kw) -> LatentLMConfig:
    dim = 32
    return LatentLMConfig(
        vocab_size=10,
        trunk=TransformerConfig(dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=256),
        modalities={
            "audio": HeadConfig(latent_dim=3, cond_dim=dim, width=32, depth=2),
            "image": HeadConfig(latent_dim=5, cond_dim=dim, width=32, depth=2),
        },
        **kw,
    )


def example_batch(model: LatentLM, seed: int = 0):
    return pack(example_seqs(model, seed), model.layout, model.latent_dims)


def example_seqs(model: LatentLM, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lay = model.layout
    seqs = [
        [
            Tokens(torch.tensor([lay.bos]), 0.0),
            Tokens(lay.text([1, 2, 3]), 0.0),
            Tokens(torch.tensor([lay.begin["audio"]]), 0.0),
            Latents("audio", torch.randn(4, 3, generator=g)),
            Tokens(torch.tensor([lay.end["audio"]])),
        ],
        [
            Tokens(torch.tensor([lay.bos]), 0.0),
            Tokens(lay.text([4]), 1.0),
            Tokens(torch.tensor([lay.begin["image"]])),
            Latents("image", torch.randn(2, 5, generator=g)),
            Tokens(torch.tensor([lay.end["image"], lay.eos])),
        ],
    ]
    return seqs


def test_layout_ids_are_disjoint():
    lay = TokenLayout(7, ["audio", "image"])
    ids = [lay.pad, lay.bos, lay.eos, lay.lat, lay.null, *lay.begin.values(), *lay.end.values()]
    assert len(set(ids)) == len(ids) == lay.offset and lay.size == lay.offset + 7
    assert lay.untext(lay.text([0, 6])).tolist() == [0, 6]
    with pytest.raises(ValueError, match="token ids must be in"):
        lay.text([7])


def test_pack_validates_and_pads():
    model = LatentLM(tiny_config())
    batch = example_batch(model)
    assert batch.tokens.shape == (2, 10) and batch.latents.shape == (2, 10, 5)
    assert batch.lengths.tolist() == [10, 7]
    assert (batch.tokens[batch.modality >= 0] == model.layout.lat).all()
    with pytest.raises(ValueError, match=r"audio latents must be \[n, 3\]"):
        pack([[Latents("audio", torch.zeros(2, 4))]], model.layout, model.latent_dims)
    with pytest.raises(ValueError, match="unknown modality"):
        pack([[Latents("video", torch.zeros(2, 3))]], model.layout, model.latent_dims)
    with pytest.raises(ValueError, match="empty"):
        pack([[]], model.layout, model.latent_dims)


def test_losses_flat_dict_and_padding_invariance():
    torch.manual_seed(0)
    model = LatentLM(tiny_config(loss_weights={"lm": 0.5}))
    batch = example_batch(model)
    terms = model.losses(batch, generator=torch.Generator().manual_seed(1))
    assert set(terms) == {"lm", "lm_acc", "diff_audio", "diff_image"}
    total = model.total_loss(terms)
    assert torch.allclose(total, 0.5 * terms["lm"] + terms["diff_audio"] + terms["diff_image"])
    total.backward()
    assert model.heads["audio"].parameters().__next__().grad is not None
    # Row 1 alone (no padding) gives the same losses as inside the padded batch with row 0 weighted out.
    seqs = example_seqs(model)
    single = pack([seqs[1]], model.layout, model.latent_dims)
    both = pack(seqs, model.layout, model.latent_dims)
    both.weight[0] = 0
    with torch.no_grad():
        a = model.losses(single, generator=torch.Generator().manual_seed(2))
        b = model.losses(both, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a["lm"], b["lm"], atol=1e-5)
    assert torch.allclose(a["diff_image"], b["diff_image"], atol=1e-5)


def test_unknown_loss_weight_key_and_cond_dim_mismatch():
    with pytest.raises(ValueError, match="unknown keys"):
        tiny_config(loss_weights={"diff_video": 1.0})
    with pytest.raises(ValueError, match="cond_dim"):
        LatentLMConfig(trunk=TransformerConfig(dim=16), modalities={"a": HeadConfig(cond_dim=32)})


def test_config_yaml_overrides_build_model(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text(
        "vocab_size: 12\ntrunk: {dim: 32, n_layers: 1, n_heads: 2}\n"
        "modalities:\n  audio: {latent_dim: 4, cond_dim: 32, width: 16, depth: 1}\n"
    )
    cfg = load_config(LatentLMConfig, p, ["modalities.audio.diffusion.prediction=eps", "trunk.n_layers=2"])
    model = LatentLM(cfg)
    assert len(model.trunk.layers if hasattr(model.trunk, "layers") else model.trunk.blocks) == 2
    assert model.heads["audio"].cfg.diffusion.prediction == "eps"


def test_release_round_trip_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = LatentLM(tiny_config()).eval()
    model.set_latent_stats("audio", torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0]))
    model.save_pretrained(tmp_path / "rel")
    loaded = LatentLM.from_pretrained(tmp_path / "rel")
    batch = example_batch(model)
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))
    assert torch.equal(loaded.normalize("audio", torch.ones(3)), model.normalize("audio", torch.ones(3)))
    out_a = model.generate(batch, max_new=5, generator=torch.Generator().manual_seed(3))
    out_b = loaded.generate(batch, max_new=5, generator=torch.Generator().manual_seed(3))
    assert _items_equal(out_a, out_b)


def test_latent_stats_follow_the_latents_device():
    """Training lays batches out on the CPU while the model sits on the GPU (this failed on an H200): the stats
    go to the latents' device. The meta device stands in for a GPU here."""
    model = LatentLM(tiny_config())
    model.set_latent_stats("audio", torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 2.0, 3.0]))
    z = torch.ones(4, 3, device="meta")
    assert model.normalize("audio", z).device.type == "meta"
    assert model.denormalize("audio", z).device.type == "meta"
    x = torch.tensor([[1.1, 2.2, 3.3]])
    assert torch.allclose(model.normalize("audio", x), torch.ones(1, 3))
    assert torch.allclose(model.denormalize("audio", torch.ones(1, 3)), x)


def _items_equal(a, b) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb):
            if isinstance(x, int) != isinstance(y, int):
                return False
            if isinstance(x, int) and x != y:
                return False
            if not isinstance(x, int) and not torch.allclose(x, y, atol=1e-4):
                return False
    return True


def test_cached_generation_matches_full_recompute():
    """The KV-cached decoder must produce exactly what re-running the whole sequence at every step produces."""
    torch.manual_seed(0)
    model = LatentLM(tiny_config()).eval()
    lay = model.layout
    prompts = [
        [
            Tokens(torch.tensor([lay.bos])),
            Tokens(lay.text([1, 2, 3])),
            Tokens(torch.tensor([lay.begin["audio"]])),
        ],
        [Tokens(torch.tensor([lay.bos])), Tokens(lay.text([5])), Tokens(torch.tensor([lay.begin["image"]]))],
    ]
    kw = dict(max_new=6, steps=4, token_temperature=0.0, min_latents=6)
    cached = model.generate(
        pack(prompts, lay, model.latent_dims), generator=torch.Generator().manual_seed(7), **kw
    )
    # Reference: re-pack each row with everything generated so far and run the full forward each step.
    g = torch.Generator().manual_seed(7)
    rows = [list(p) for p in prompts]
    for _ in range(6):
        batch = pack(rows, lay, model.latent_dims)
        with torch.no_grad():
            h = model(batch)
        last = h[torch.arange(2), batch.lengths - 1]
        new = []
        for r, m in enumerate(["audio", "image"]):
            new.append((m, last[r : r + 1]))
        # Same order of generator draws as the decoder: one sampling call per modality group.
        for r, (m, cond) in enumerate(new):
            z = model.heads[m].sample(cond, steps=4, generator=g)[0]
            rows[r].append(Latents(m, z[None]))
    for r in range(2):
        ref = [s.values[0] for s in rows[r][3:]]
        assert len(cached[r]) == 6
        for x, y in zip(cached[r], ref):
            assert torch.allclose(x, y, atol=1e-4), (x, y)


def test_generation_grammar_and_stop():
    torch.manual_seed(0)
    model = LatentLM(tiny_config()).eval()
    lay = model.layout
    prefix = pack(
        [[Tokens(torch.tensor([lay.bos, lay.begin["image"]]))], [Tokens(torch.tensor([lay.bos]))]],
        lay,
        model.latent_dims,
    )
    out = model.generate(
        prefix, max_new=12, span_length=3, steps=2, generator=torch.Generator().manual_seed(0)
    )
    # Row 0 is inside an image span of fixed length 3: exactly 3 latents then <eo_image>, which stops it.
    assert [type(x) for x in out[0][:3]] == [torch.Tensor] * 3
    assert out[0][3] == lay.end["image"] and len(out[0]) == 4
    # Row 1 never sees <lat>, an end token, <pad>, <bos> or <null> outside a span.
    forbidden = {lay.lat, lay.pad, lay.bos, lay.null, *lay.end.values()}
    in_span = False
    for item in out[1]:
        if isinstance(item, int):
            if item in lay.begin.values():
                in_span = True
            elif item in lay.end.values():
                in_span = False
            elif not in_span:
                assert item not in forbidden


def test_cfg_requires_uncond_prefix():
    model = LatentLM(tiny_config()).eval()
    batch = example_batch(model)
    with pytest.raises(ValueError, match="uncond"):
        model.generate(batch, max_new=2, cfg=1.5)


def test_per_row_generators_make_rows_independent_of_the_batch():
    """With one generator per row, a row samples the same whether decoded alone or beside other rows."""
    torch.manual_seed(0)
    model = LatentLM(tiny_config()).eval()
    lay = model.layout
    prompts = [
        [
            Tokens(torch.tensor([lay.bos])),
            Tokens(lay.text([1, 2])),
            Tokens(torch.tensor([lay.begin["audio"]])),
        ],
        [
            Tokens(torch.tensor([lay.bos])),
            Tokens(lay.text([7, 8, 9])),
            Tokens(torch.tensor([lay.begin["audio"]])),
        ],
    ]
    kw = dict(max_new=5, steps=3, token_temperature=1.0, temperature=1.0, min_latents=5)
    gens = lambda *seeds: [torch.Generator().manual_seed(s) for s in seeds]  # noqa: E731
    both = model.generate(pack(prompts, lay, model.latent_dims), generator=gens(11, 22), **kw)
    alone = [
        model.generate(pack([p], lay, model.latent_dims), generator=gens(s), **kw)[0]
        for p, s in zip(prompts, (11, 22))
    ]
    assert _items_equal(both, alone)
    swapped = model.generate(pack(prompts, lay, model.latent_dims), generator=gens(22, 11), **kw)
    assert not _items_equal(both, swapped)
    with pytest.raises(ValueError, match="generators for 2 rows"):
        model.generate(pack(prompts, lay, model.latent_dims), generator=gens(1), **kw)
    # read_noise perturbs what the model reads back, not what it yields: the first latent (sampled before any
    # noisy read) is unchanged, later ones differ, and rows stay independent of the batch
    noisy = model.generate(
        pack(prompts, lay, model.latent_dims), generator=gens(11, 22), read_noise=0.5, **kw
    )
    for clean_row, noisy_row in zip(both, noisy):
        lat_c = [x for x in clean_row if isinstance(x, torch.Tensor)]
        lat_n = [x for x in noisy_row if isinstance(x, torch.Tensor)]
        assert torch.equal(lat_c[0], lat_n[0]) and not torch.allclose(lat_c[-1], lat_n[-1])
    alone = [
        model.generate(pack([p], lay, model.latent_dims), generator=gens(s), read_noise=0.5, **kw)[0]
        for p, s in zip(prompts, (11, 22))
    ]
    assert _items_equal(noisy, alone)
    with pytest.raises(ValueError, match="read_noise"):
        model.generate(pack(prompts, lay, model.latent_dims), read_noise=-1.0, **kw)
