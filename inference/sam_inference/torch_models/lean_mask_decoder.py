"""SAM's mask decoder (prompt → low-res mask) rewritten for fewer FLOPs and no layout shuffles: the same function.

Two exact rewrites of upstream's `MaskDecoder.predict_masks` (segment_anything/modeling/mask_decoder.py and
transformer.py), which the onnxruntime decoder (`onnx_decoder.py`) exports instead of the original:

- **Cross attention in low-rank form.** Upstream projects all N = 4096 image tokens in each of its five cross
  attentions (k and v for tokens→image, q and out for image→tokens): 2·N·256·128 FLOPs per projection, most of
  the decoder's 3.7 GFLOP. There are only T prompt/output tokens (5 + clicks + 1), so the same products can be
  taken the other way round, per head h with the tokens' projections q_h, k_h, v_h. Tokens→image: scores =
  (q_h W_k^h) k^T, the k bias dropped (a constant along the softmax axis), and output = (A v) W_v^hT + b_v^h
  (each row of A sums to 1). Image→tokens: scores = q (k_h W_q^h)^T + k_h·b_q^h, output = Σ_h A_h (v_h W_o^hT)
  + b_o. Each costs 4·N·256·H·T instead of 4·N·256·128: fewer FLOPs while H·T <= 128, i.e. up to 11 prompt
  points (padding and box corners included); a prompt with more runs a graph with upstream's attention.
- **Channel-last upscaling.** The two stride-2 2x2 transposed convolutions are per-pixel matrix products, and
  `LayerNorm2d` is a layer norm over channels; kept in the transformer's token layout (N x C) they run as plain
  MatMul and LayerNormalization, with one permutation at the end, of the single selected mask only.

The selected mask follows `SamOnnxModel.select_masks` (upstream's export): the best-scored of the three multimask
outputs at up to two prompt tokens, mask 0 otherwise; picked from the IoU head before the mask is computed.
Equality with upstream within float rounding: tests/unit/inference/test_lean_mask_decoder.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.common import MLPBlock
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
from segment_anything.utils.onnx import SamOnnxModel
from torch import Tensor, nn


def as_tokens(embedding: Tensor) -> Tensor:
    """An image embedding (B, C, H, W) as its image tokens (B, H·W, C), channel-last (a view)."""
    return embedding.flatten(2).transpose(1, 2)


def _per_head(weight: Tensor, heads: int) -> Tensor:
    """A projection weight (D, C) as (heads, D / heads, C)."""
    rows, columns = weight.shape
    return weight.reshape(heads, rows // heads, columns)


@dataclass(frozen=True)
class GraphForm:
    """How the products over the N image tokens are laid out and computed; the function is the same.

    `tokens_major`: image→tokens scores laid out (B, H·T, N), the softmax over each head's T rows, instead of
    (B, N, H·T) with a softmax over rows of T. OpenVINO's softmax runs that layout about 2x faster (rows of 4096
    instead of 7), onnxruntime's a little slower (bench/README).
    `bf16_products`: those products (the 10 attention ones and both upscaling ones), and the tokens' MLPs (`_mlp`),
    take bfloat16 operands and give float32, as `torch.autocast` would; every sum, softmax, norm and GELU stays
    float32, except two, as under autocast: the image tokens plus their positional encoding are summed in bfloat16
    (`operand`), and the last upscaling stage's bias, GELU and the mask's product (32 → 1 per pixel) run in
    bfloat16 (`LeanLowResDecoder.forward`). For a runtime with bfloat16 MatMul kernels (OpenVINO on AMX or
    AVX512_BF16): the products are most of the FLOPs."""

    tokens_major: bool = False
    bf16_products: bool = False

    def operand(self, x: Tensor) -> Tensor:
        """`x` as the products over image tokens read it (bfloat16 where `bf16_products`): a tensor read by several
        products, or added to another before them, is cast once (the positioned image tokens are summed in
        bfloat16: half the bytes of a float32 sum and its cast, ~1 ms a click over the three attentions here)."""
        return x.to(torch.bfloat16) if self.bf16_products else x

    def product(self, a: Tensor, b: Tensor, bias: Tensor | None = None, widen: bool = True) -> Tensor:
        """`a @ b` (+ `bias`) over image tokens. Where `bf16_products`, in bfloat16 operands, the bias added in
        bfloat16 straight after the product (where a runtime fuses the two, as autocast's linear), and widened to
        float32 unless `widen` is False."""
        if not self.bf16_products:
            out = torch.matmul(a, b)
            return out if bias is None else out + bias
        half = torch.bfloat16
        out = torch.matmul(a.to(half), b.to(half))
        out = out if bias is None else out + bias.to(half)
        return out.float() if widen else out


EXACT = GraphForm()


def tokens_to_image(attention: Attention, q: Tensor, k: Tensor, v: Tensor, form: GraphForm = EXACT) -> Tensor:
    """`attention(q=tokens (B,T,C), k=image (B,N,C), v=image)` without projecting the N image tokens."""
    batch, tokens, channels = q.shape
    heads = attention.num_heads
    q_heads = attention.q_proj(q).reshape(batch, tokens, heads, -1).transpose(1, 2)  # B,H,T,d
    head_dim = q_heads.shape[-1]
    # The softmax's scale in the weight (a constant of the graph), not on the scores (H·T x N): a pass fewer.
    folded = torch.matmul(q_heads, _per_head(attention.k_proj.weight, heads) / math.sqrt(head_dim))
    scores = form.product(folded.reshape(batch, heads * tokens, channels), k.transpose(1, 2))  # B,HT,N
    mixed = form.product(torch.softmax(scores, dim=-1), v).reshape(batch, heads, tokens, channels)
    values = torch.matmul(mixed, _per_head(attention.v_proj.weight, heads).transpose(1, 2))  # B,H,T,d
    values = values + attention.v_proj.bias.reshape(heads, 1, head_dim)
    return attention.out_proj(values.transpose(1, 2).reshape(batch, tokens, heads * head_dim))  # type: ignore[no-any-return]


def image_to_tokens(attention: Attention, q: Tensor, k: Tensor, v: Tensor, form: GraphForm = EXACT) -> Tensor:
    """`attention(q=image (B,N,C), k=tokens (B,T,C), v=tokens)` without projecting the N image tokens."""
    batch, pixels, channels = q.shape
    tokens = k.shape[1]
    heads = attention.num_heads
    k_heads = attention.k_proj(k).reshape(batch, tokens, heads, -1).transpose(1, 2)  # B,H,T,d
    v_heads = attention.v_proj(v).reshape(batch, tokens, heads, -1).transpose(1, 2)
    head_dim = k_heads.shape[-1]
    scale = math.sqrt(head_dim)  # in the weight and the bias, as in `tokens_to_image`
    folded = torch.matmul(k_heads, _per_head(attention.q_proj.weight, heads) / scale)
    folded = folded.reshape(batch, heads * tokens, channels)
    bias = torch.matmul(k_heads, attention.q_proj.bias.reshape(heads, head_dim, 1) / scale)
    bias = bias.reshape(batch, heads * tokens)
    out_weight = attention.out_proj.weight.reshape(channels, heads, head_dim).permute(1, 2, 0)  # H,d,C
    projected = torch.matmul(v_heads, out_weight).reshape(batch, heads * tokens, channels)  # B,HT,C
    if form.tokens_major:
        scores = form.product(folded, q.transpose(1, 2)) + bias[:, :, None]  # B,HT,N
        weights = torch.softmax(scores.reshape(batch, heads, tokens, pixels), dim=2).reshape(batch, -1, pixels)
        return form.product(weights.transpose(1, 2), projected) + attention.out_proj.bias  # type: ignore[no-any-return]
    scores = form.product(q, folded.transpose(1, 2)) + bias[:, None, :]  # B,N,HT
    weights = torch.softmax(scores.reshape(batch, pixels, heads, tokens), dim=-1).reshape(batch, pixels, -1)
    return form.product(weights, projected) + attention.out_proj.bias  # type: ignore[no-any-return]


def _mlp(mlp: MLPBlock, x: Tensor, form: GraphForm) -> Tensor:
    """`mlp(x)` on the tokens, in bfloat16 where `form.bf16_products` (as under autocast): its two 256 x 2048
    weights are the decoder's largest and are read from memory on every click (~0.4 ms a click less here)."""
    if not form.bf16_products:
        return mlp(x)  # type: ignore[no-any-return]
    hidden = mlp.act(form.product(x, mlp.lin1.weight.t(), mlp.lin1.bias, widen=False))
    return form.product(hidden, mlp.lin2.weight.t(), mlp.lin2.bias)


def image_operands(keys: Tensor, key_pe: Tensor, form: GraphForm) -> tuple[Tensor, Tensor]:
    """The image tokens as a block's products read them (`form.operand`), and the same plus their positional
    encoding."""
    image = form.operand(keys)
    return image, image + form.operand(key_pe)


def _block(
    block: TwoWayAttentionBlock,
    queries: Tensor,
    keys: Tensor,
    query_pe: Tensor,
    key_pe: Tensor,
    form: GraphForm,
    operands: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """`TwoWayAttentionBlock.forward` with both cross attentions in low-rank form (`image_to_tokens`);
    `operands`: `image_operands(keys, key_pe, form)` computed already."""
    if block.skip_first_layer_pe:
        queries = block.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + block.self_attn(q=q, k=q, v=queries)
    queries = block.norm1(queries)
    image, positioned = image_operands(keys, key_pe, form) if operands is None else operands
    queries = block.norm2(
        queries + tokens_to_image(block.cross_attn_token_to_image, queries + query_pe, positioned, image, form)
    )
    queries = block.norm3(queries + _mlp(block.mlp, queries, form))
    attended = image_to_tokens(block.cross_attn_image_to_token, positioned, queries + query_pe, queries, form)
    keys = block.norm4(keys + attended)
    return queries, keys


def two_way_transformer(
    transformer: TwoWayTransformer,
    keys: Tensor,
    key_pe: Tensor,
    point_embedding: Tensor,
    low_rank: bool,
    form: GraphForm = EXACT,
    first: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """`TwoWayTransformer.forward` on image tokens already in (B, N, C) layout; `low_rank`: the cross attentions
    in low-rank form (laid out and computed as `form` says), else upstream's own blocks. In low-rank form the
    image tokens come back as `form.operand` made them for the last attention, which the upscaling's first product
    reads too (one cast of them, not two). `first`: the first block's `image_operands`, computed already (low-rank
    form only)."""
    if first is not None and not low_rank:
        raise ValueError("the first block's operands are read in low-rank form only")
    queries = point_embedding
    for index, block in enumerate(transformer.layers):
        if low_rank:
            operands = first if index == 0 else None
            queries, keys = _block(block, queries, keys, point_embedding, key_pe, form, operands)
        else:
            queries, keys = block(queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe)
    final = transformer.final_attn_token_to_image
    if low_rank:
        image, positioned = image_operands(keys, key_pe, form)
        attended = tokens_to_image(final, queries + point_embedding, positioned, image, form)
        return transformer.norm_final_attn(queries + attended), image
    attended = final(q=queries + point_embedding, k=keys + key_pe, v=keys)
    return transformer.norm_final_attn(queries + attended), keys


def low_rank_max_points(model: Sam) -> int:
    """The most prompt points (padding and box corners included) at which the low-rank form takes fewer FLOPs:
    heads x tokens <= the attention's internal dim (11 for SAM: 8 x (5 + 11) = 128)."""
    attention = model.mask_decoder.transformer.final_attn_token_to_image
    return int(attention.internal_dim // attention.num_heads - 1 - model.mask_decoder.num_mask_tokens)


def _pixelwise_transposed_conv(x: Tensor, conv: nn.ConvTranspose2d, form: GraphForm, widen: bool = True) -> Tensor:
    """A stride-2 2x2 `ConvTranspose2d` on channel-last pixels (..., C_in) → (..., 4, C_out), the 4 being the
    output pixel's (row, column) offset within its 2x2 cell. Where `form.bf16_products`, computed in bfloat16 with
    its bias (as autocast's convolution) and returned in float32 if `widen`, else in bfloat16."""
    c_in, c_out = (int(size) for size in conv.weight.shape[:2])  # Python ints: constants in the exported graph
    weight = conv.weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)
    bias = conv.bias.repeat(4)  # type: ignore[union-attr]  # per (offset, channel), the product's layout
    # One 2-D product with its bias before any reshape, so a runtime fuses the two (onnxruntime runs a 3-D product
    # as many small ones; OpenVINO adds a bias after a reshape, or after widening, in a pass of its own).
    return form.product(x.reshape(-1, c_in), weight, bias, widen).reshape(*x.shape[:-1], 4, c_out)


class LeanLowResDecoder(SamOnnxModel):  # type: ignore[misc]
    """Prompt encoder + mask decoder of `model`, from upstream export's inputs to (iou_predictions [1,1],
    low_res_masks [1,1,256,256]) of the selected mask (see the module docstring); `low_rank` and `form` as in
    `two_way_transformer` (a graph is exported for each `low_rank`: `low_rank_max_points` says which one pays;
    `form` also governs the upscaling's products).

    `mask_prompt`: None takes upstream's `mask_input` and `has_mask_input` and mixes the mask's embedding with the
    no-mask one by `has_mask_input`; False takes neither (the no-mask embedding, and no mask downscaling in the
    graph: a first click); True takes `mask_input` alone, always used (a refinement). Each is upstream's function
    at the `has_mask_input` it implies, and the last two skip the mixing passes over the N image tokens.

    `token_input`: the first input is the embedding already as image tokens, (1, N, C) channel-last (`as_tokens`),
    instead of upstream's (1, C, 64, 64): a caller that decodes many prompts on one embedding lays it out once."""

    def __init__(
        self,
        model: Sam,
        low_rank: bool = True,
        form: GraphForm = EXACT,
        mask_prompt: bool | None = None,
        token_input: bool = False,
    ) -> None:
        super().__init__(model, return_single_mask=True)  # upstream's `_embed_points` is used as it is
        self.low_rank = low_rank
        self.form = form
        self.mask_prompt = mask_prompt
        self.token_input = token_input
        upscaling = model.mask_decoder.output_upscaling
        if not (isinstance(upscaling[0], nn.ConvTranspose2d) and isinstance(upscaling[3], nn.ConvTranspose2d)):
            raise TypeError("unexpected output_upscaling: expected SAM's ConvTranspose2d, LayerNorm2d, GELU x2")
        with torch.no_grad():  # a constant of the model: the positional encoding of every image token
            pe = model.prompt_encoder.get_dense_pe()
        self.key_pe: Tensor
        self.register_buffer("key_pe", pe.flatten(2).transpose(1, 2).contiguous(), persistent=False)
        self.grid = int(pe.shape[-1])  # 64 image tokens a side
        self.upscaled_channels = int(upscaling[1].weight.shape[0])

    def _dense_tokens(self, mask_input: Tensor | None, has_mask_input: Tensor | None) -> Tensor:
        """`SamOnnxModel._embed_masks` as (1, N, C) (or (1, C), the same for every token, without a mask): the
        last 1x1 convolution done on channel-last pixels; `mask_prompt` says which inputs there are."""
        no_mask = self.model.prompt_encoder.no_mask_embed.weight
        if self.mask_prompt is False or mask_input is None:
            return no_mask  # type: ignore[no-any-return]
        downscaling = self.model.prompt_encoder.mask_downscaling
        hidden = downscaling[:-1](mask_input).flatten(2).transpose(1, 2)  # 1,N,16
        last = downscaling[-1]
        masked = F.linear(hidden, last.weight.flatten(1), last.bias)
        if self.mask_prompt or has_mask_input is None:
            return masked
        return has_mask_input * masked + (1 - has_mask_input) * no_mask  # type: ignore[no-any-return]

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor | None = None,
        has_mask_input: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        tokens_in = image_embeddings if self.token_input else as_tokens(image_embeddings)
        keys = tokens_in + self._dense_tokens(mask_input, has_mask_input)
        return self.decode(keys, point_coords, point_labels)

    def decode(
        self,
        keys: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        first_block: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`forward` from the image tokens plus their dense prompt embedding (`keys`, (1, N, C)); `first_block` as
        `two_way_transformer`'s `first`."""
        decoder = self.model.mask_decoder
        sparse = self._embed_points(point_coords, point_labels)
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0).unsqueeze(0)
        tokens = torch.cat((output_tokens, sparse), dim=1)
        transformer = decoder.transformer
        hs, keys = two_way_transformer(transformer, keys, self.key_pe, tokens, self.low_rank, self.form, first_block)
        scores = decoder.iou_prediction_head(hs[:, 0, :])  # 1, num_mask_tokens
        # SamOnnxModel.select_masks: mask 0 wins by 1000 above two prompt tokens, loses by 1000 at up to two.
        reweight = torch.zeros_like(scores)
        reweight[:, 0] = 1000.0
        best = torch.argmax(scores + (point_coords.shape[1] - 2.5) * reweight, dim=1)
        hyper = torch.cat([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)])
        hyper = torch.index_select(hyper, 0, best)  # 1,32: the selected mask token's hypernetwork output
        upscaling = decoder.output_upscaling
        first = _pixelwise_transposed_conv(keys[0], upscaling[0], self.form)  # N,4,64
        norm = upscaling[1]
        first = upscaling[2](F.layer_norm(first, (self.upscaled_channels,), norm.weight, norm.bias, norm.eps))
        # N,4,4,32. Where `bf16_products`, kept in bfloat16 through its GELU and the mask's product (32 → 1 per
        # pixel), as under autocast: OpenVINO fuses product, bias and GELU into one node, and the mask's product
        # reads half the bytes. Widening these 2M values (a pass) and a float32 GELU (another) took ~1 ms more.
        second = upscaling[4](_pixelwise_transposed_conv(first, upscaling[3], self.form, widen=False))
        side = self.grid
        second = second.reshape(-1, second.shape[-1])  # a 2-D product, as above
        logits = self.form.product(second, hyper.t())
        logits = logits.reshape(side, side, 2, 2, 2, 2)  # i, j, a, b, c, d
        # Row 4i + 2a + c, column 4j + 2b + d (the first convolution's offset, then the second's).
        mask = logits.permute(0, 2, 4, 1, 3, 5).reshape(1, 1, 4 * side, 4 * side)
        return torch.gather(scores, 1, best[:, None]), mask


class FirstClickDecoder(LeanLowResDecoder):
    """`LeanLowResDecoder(model, low_rank=True, form, mask_prompt=False, token_input=True)` (a first click: no mask
    input) reading what its first block would compute from the image tokens alone, `prepare`d once per embedding:
    the tokens plus the no-mask embedding (`keys`) and their `image_operands`. Those are the same for every first
    click on a frame, and computing them is three passes over the N image tokens (~0.65 ms of a click's graph on a
    2-core AMX Xeon, bench/README). Inputs: `PREPARED` names, then upstream's point inputs."""

    def __init__(self, model: Sam, form: GraphForm = EXACT) -> None:
        super().__init__(model, low_rank=True, form=form, mask_prompt=False, token_input=True)

    @torch.no_grad()
    def prepare(self, image_tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(keys, image, positioned) of `image_tokens` (1, N, C): this graph's first three inputs."""
        keys = image_tokens + self._dense_tokens(None, None)
        return (keys, *image_operands(keys, self.key_pe, self.form))

    @torch.no_grad()
    def forward(  # type: ignore[override]
        self, keys: Tensor, image: Tensor, positioned: Tensor, point_coords: Tensor, point_labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        return self.decode(keys, point_coords, point_labels, (image, positioned))
