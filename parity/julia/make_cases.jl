# Recompute the parity expectations with the reference implementation,
# AutoEncoderToolkit.jl v0.1.2 on Flux 0.14.
#
# The machines used to build this package have no Julia; run this script
# where Julia (1.11) is installed:
#
#     julia --project=parity/julia -e 'using Pkg; Pkg.instantiate()'
#     julia --project=parity/julia parity/julia/make_cases.jl            # every case
#     julia --project=parity/julia parity/julia/make_cases.jl NAME ...   # some cases
#
# For every case file parity/cases/<name>.json (format: parity/case_format.md)
# the script
#   1. rebuilds the case's models from the stored float32 weights, using the
#      reference's own types (encoders, decoders, VAE, MutualInfoChain,
#      InfoMaxVAE) and Flux layers;
#   2. calls Random.seed!(julia_seed) and replays the case's list of draws
#      (randn(Float32, ...) and shuffle(1:B)) to record the noise and the
#      permutations that this seed gives;
#   3. calls Random.seed!(julia_seed) again and runs the case's operation, so
#      that the reference draws the same noise and permutations itself;
#   4. writes parity/julia_outputs/<name>.json with the outputs, the recorded
#      draws, and the exception where the reference raises.
# Cases of the port's own fused training step (op infomax_train_fused) have no
# counterpart in the reference: for them only the draws are recorded.
#
# Layout: arrays in the case files have batch-first (Python) shapes, flattened
# in C order, which is the memory of the Julia array of the reversed shape:
# a (B, D) array is read as a D x B matrix.  Dense weights are stored in
# (out, in) index order, so they are read as (in, out) and transposed.
# Permutations are 0-based in the files and 1-based here.

using Random
using JSON3
using Flux
using AutoEncoderToolkit

const AET = AutoEncoderToolkit
const IMV = AET.InfoMaxVAEs
const VAEs = AET.VAEs

const MU = Symbol("\u03bc")           # the reference's mean field (U+00B5 in its source is read as U+03BC)
const MU_MICRO = Symbol("\u00b5")
const LOGSIGMA = Symbol("log\u03c3")
const SIGMA = Symbol("\u03c3")

const PARITY_DIR = normpath(joinpath(@__DIR__, ".."))
const CASES_DIR = joinpath(PARITY_DIR, "cases")
const OUT_DIR = joinpath(PARITY_DIR, "julia_outputs")
const OUTPUT_FORMAT = "aet-parity-julia-output/1"

# ---------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------

plain(x::AbstractDict) = Dict{String,Any}(String(k) => plain(v) for (k, v) in x)
plain(x::AbstractVector) = Any[plain(v) for v in x]
plain(x) = x

num(v::Real) = Float64(v)
function num(v::AbstractString)
    v == "NaN" && return NaN
    v == "Infinity" && return Inf
    v == "-Infinity" && return -Inf
    return parse(Float64, v)
end

"Array stored in the case file -> Julia array of the reversed shape (same memory)."
function decode(a::AbstractDict)
    shape = Int[Int(s) for s in a["shape"]]
    dtype = a["dtype"]
    data = a["data"]
    if dtype == "int64"
        vals = Int[Int(v) for v in data]
    elseif dtype == "float32"
        vals = Float32[Float32(num(v)) for v in data]
    elseif dtype == "float64"
        vals = Float64[num(v) for v in data]
    else
        error("unsupported dtype $dtype")
    end
    isempty(shape) && return vals[1]
    return reshape(vals, Tuple(reverse(shape)))
end

"A stored (out, in) weight -> the Julia (out, in) matrix."
decode_weight(a::AbstractDict) = Matrix(permutedims(decode(a)))

jnum(v::Integer) = Int(v)
function jnum(v::AbstractFloat)
    isnan(v) && return "NaN"
    isinf(v) && return v > 0 ? "Infinity" : "-Infinity"
    return Float64(v)
end
dtype_name(::Type{Float32}) = "float32"
dtype_name(::Type{Float64}) = "float64"
dtype_name(::Type{<:Integer}) = "int64"
dtype_name(::Type{Bool}) = "int64"

"Julia array -> stored array with the batch-first shape (same memory)."
encode(A::AbstractArray{<:Real}) = Dict{String,Any}(
    "shape" => reverse(collect(size(A))),
    "dtype" => dtype_name(eltype(A)),
    "data" => Any[jnum(v) for v in vec(A)],
)
encode(x::Real) = Dict{String,Any}("shape" => Int[], "dtype" => dtype_name(typeof(x)),
                                   "data" => Any[jnum(x)])

"A Julia (out, in) weight (or its gradient / Adam moment) -> stored (out, in) index order."
weight_out(W::AbstractMatrix) = Matrix(permutedims(W))

# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------

const ACTIVATIONS = Dict{String,Function}(
    "identity" => identity,
    "relu" => Flux.relu,
    "tanh" => tanh,
    "sigmoid" => Flux.sigmoid,
    "softplus" => Flux.softplus,
    "elu" => Flux.elu,
    "gelu" => Flux.gelu,
    "swish" => Flux.swish,
    "silu" => Flux.swish,
    "leakyrelu" => Flux.leakyrelu,
)

const FIELDS = Dict{String,Vector{String}}(
    "JointGaussianLogEncoder" => ["encoder", "mu", "logsigma"],
    "JointGaussianEncoder" => ["encoder", "mu", "sigma"],
    "SimpleGaussianDecoder" => ["decoder"],
    "BernoulliDecoder" => ["decoder"],
    "CategoricalDecoder" => ["decoder"],
    "JointGaussianLogDecoder" => ["decoder", "mu", "logsigma"],
    "JointGaussianDecoder" => ["decoder", "mu", "sigma"],
    "SplitGaussianLogDecoder" => ["mu", "logsigma"],
    "SplitGaussianDecoder" => ["mu", "sigma"],
    "MutualInfoChain" => ["data", "latent", "mlp"],
)

const CONSTRUCTORS = Dict{String,Any}(
    "JointGaussianLogEncoder" => AET.JointGaussianLogEncoder,
    "JointGaussianEncoder" => AET.JointGaussianEncoder,
    "SimpleGaussianDecoder" => AET.SimpleGaussianDecoder,
    "BernoulliDecoder" => AET.BernoulliDecoder,
    "CategoricalDecoder" => AET.CategoricalDecoder,
    "JointGaussianLogDecoder" => AET.JointGaussianLogDecoder,
    "JointGaussianDecoder" => AET.JointGaussianDecoder,
    "SplitGaussianLogDecoder" => AET.SplitGaussianLogDecoder,
    "SplitGaussianDecoder" => AET.SplitGaussianDecoder,
    "MutualInfoChain" => IMV.MutualInfoChain,
)

const JULIA_FIELD = Dict{String,Symbol}(
    "encoder" => :encoder, "decoder" => :decoder, "mu" => MU, "logsigma" => LOGSIGMA,
    "sigma" => SIGMA, "data" => :data, "latent" => :latent, "mlp" => :mlp,
)

function pyname(k::Symbol)
    (k == MU || k == MU_MICRO) && return "mu"
    k == LOGSIGMA && return "logsigma"
    k == SIGMA && return "sigma"
    return String(k)
end

"Layers for one layer spec: a Dense (plus ActivationOverDims for softmax) or Flatten."
function build_layer(spec, P, name)
    kind = spec["kind"]
    if kind == "flatten"
        return Any[AET.Flatten()]
    elseif kind == "dense"
        W = decode_weight(P[name*".weight"])
        b = vec(decode(P[name*".bias"]))
        size(W) == (Int(spec["out"]), Int(spec["in"])) || error("$name: weight size $(size(W))")
        act = spec["activation"]
        if act == "softmax"
            return Any[Flux.Dense(W, b, identity), AET.ActivationOverDims(Flux.softmax, 1)]
        end
        return Any[Flux.Dense(W, b, ACTIVATIONS[act])]
    end
    error("unknown layer kind $kind")
end

"""
Build a layer or a Chain.  `reg` collects `name => path`, where `name` is the
case's parameter prefix of a Dense and `path` the keys that reach that Dense
from the root object (the same keys walk the gradient and optimiser trees).
"""
function build_module(spec, P, name, path, reg)
    if spec["kind"] == "chain"
        layers = Any[]
        for (i, ls) in enumerate(spec["layers"])
            lname = "$name.$(i - 1)"
            built = build_layer(ls, P, lname)
            if ls["kind"] == "dense"
                push!(reg, lname => vcat(path, Any[:layers, length(layers) + 1]))
            end
            append!(layers, built)
        end
        return Flux.Chain(layers...)
    end
    built = build_layer(spec, P, name)
    length(built) == 1 || error("$name: a softmax layer must sit inside a chain")
    spec["kind"] == "dense" && push!(reg, name => path)
    return only(built)
end

function build_typed(spec, P, name, path, reg)
    T = spec["type"]
    parts = Any[build_module(spec[f], P, "$name.$f", vcat(path, Any[JULIA_FIELD[f]]), reg)
                for f in FIELDS[T]]
    return CONSTRUCTORS[T](parts...)
end

function build_models(case)
    spec = case["model"]
    P = case["params"]
    reg = Pair{String,Vector{Any}}[]
    M = Dict{String,Any}()
    if haskey(spec, "vae")
        enc = build_typed(spec["vae"]["encoder"], P, "vae.encoder", Any[:vae, :encoder], reg)
        dec = build_typed(spec["vae"]["decoder"], P, "vae.decoder", Any[:vae, :decoder], reg)
        M["vae"] = VAEs.VAE(enc, dec)
    end
    haskey(spec, "mi") && (M["mi"] = build_typed(spec["mi"], P, "mi", Any[:mi], reg))
    for key in ("encoder", "decoder")
        haskey(spec, key) && (M[key] = build_typed(spec[key], P, key, Any[Symbol(key)], reg))
    end
    haskey(spec, "chain") && (M["chain"] = build_module(spec["chain"], P, "chain", Any[:chain], reg))
    return M, reg
end

"Follow field names (Symbols) and tuple indices (Ints); a `nothing` on the way gives `nothing`."
function getpath(obj, path)
    for k in path
        obj === nothing && return nothing
        obj = k isa Symbol ? getproperty(obj, k) : obj[k]
    end
    return obj
end

"Registry entries under `top` (\"vae\" or \"mi\"), with paths relative to that object."
function entries(reg, top::Symbol)
    [(name, path[2:end]) for (name, path) in reg if path[1] == top]
end

# Dummy containers used only for method dispatch (no random initialisation).
zdense() = Flux.Dense(zeros(Float32, 1, 1), zeros(Float32, 1), identity)
dummy_log_encoder() = AET.JointGaussianLogEncoder(Flux.Chain(zdense()), zdense(), zdense())
function dummy_decoder(T)
    T in ("SimpleGaussianDecoder", "BernoulliDecoder", "CategoricalDecoder") &&
        return CONSTRUCTORS[T](Flux.Chain(zdense()))
    T in ("JointGaussianLogDecoder", "JointGaussianDecoder") &&
        return CONSTRUCTORS[T](Flux.Chain(zdense()), zdense(), zdense())
    T in ("SplitGaussianLogDecoder", "SplitGaussianDecoder") &&
        return CONSTRUCTORS[T](Flux.Chain(zdense()), Flux.Chain(zdense()))
    error("unknown decoder type $T")
end

const DECODER_OUTPUT_FIELDS = Dict{String,Vector{String}}(
    "SimpleGaussianDecoder" => ["mu"],
    "BernoulliDecoder" => ["p"],
    "CategoricalDecoder" => ["p"],
    "JointGaussianLogDecoder" => ["mu", "logsigma"],
    "SplitGaussianLogDecoder" => ["mu", "logsigma"],
    "JointGaussianDecoder" => ["mu", "sigma"],
    "SplitGaussianDecoder" => ["mu", "sigma"],
)
jkey(f) = f == "p" ? Symbol("p") : JULIA_FIELD[f]

function named_outputs!(out, prefix, nt)
    for (k, v) in pairs(nt)
        out[prefix*pyname(k)] = v
    end
end

# ---------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------

"""
Seed, then draw in the case's order exactly as the reference draws.  A shuffle
with an `rng` entry `{"type": "MersenneTwister", "seed": k}` is what the
reference's `seed = k` keyword means (it raises, D1): `shuffle(MersenneTwister(k), 1:n)`,
which leaves the global generator untouched.
"""
function replay_draws(case)
    Random.seed!(Int(case["julia_seed"]))
    vals = Dict{String,Any}()
    for d in case["draws"]
        if d["kind"] == "randn"
            dims = reverse(Int[Int(s) for s in d["shape"]])
            vals[d["name"]] = randn(Float32, dims...)
        elseif d["kind"] == "shuffle"
            spec = get(d, "rng", nothing)
            n = Int(d["n"])
            if spec === nothing
                vals[d["name"]] = Random.shuffle(Random.GLOBAL_RNG, 1:n) .- 1
            elseif spec["type"] == "MersenneTwister"
                vals[d["name"]] = Random.shuffle(Random.MersenneTwister(Int(spec["seed"])), 1:n) .- 1
            else
                error("unknown draw generator $(spec["type"])")
            end
        else
            error("unknown draw kind $(d["kind"])")
        end
    end
    return vals
end

function draws_match(case, vals)
    stored = get(case, "draw_values", nothing)
    (stored === nothing || isempty(stored)) && return nothing
    for (name, v) in vals
        haskey(stored, name) || return false
        decode(stored[name]) == v || return false
    end
    return true
end

# ---------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------

f32(v) = Float32(v)

function loss_kwargs(kw)
    nt = (β=f32(get(kw, "beta", 1.0)), α=f32(get(kw, "alpha", 1.0)))
    haskey(kw, "seed") && kw["seed"] !== nothing && (nt = merge(nt, (seed=Int(kw["seed"]),)))
    haskey(kw, "n_samples") && kw["n_samples"] !== nothing &&
        (nt = merge(nt, (n_samples=Int(kw["n_samples"]),)))
    return nt
end

# A regularization that adds zero; the reference raises before calling it (D4, D6).
zero_regularization(outputs; kwargs...) = 0.0f0

function mi_kwargs(kw)
    nt = NamedTuple()
    get(kw, "regularization", nothing) == "zero" &&
        (nt = merge(nt, (regularization=zero_regularization,)))
    haskey(kw, "seed") && kw["seed"] !== nothing && (nt = merge(nt, (seed=Int(kw["seed"]),)))
    return nt
end

function vae_kwargs(kw)
    nt = (β=f32(get(kw, "beta", 1.0)),)
    get(kw, "reg_function", nothing) == "zero" &&
        (nt = merge(nt, (reg_function=zero_regularization,)))
    return nt
end

function seed_kw(kw)
    haskey(kw, "seed") && kw["seed"] !== nothing && return (seed=Int(kw["seed"]),)
    return NamedTuple()
end

"Gradients of every Dense under `top`; `grad` and `root` are rooted at that object."
function grads_out!(out, grad, root, reg, top)
    for (name, path) in entries(reg, top)
        g = getpath(grad, path)
        d = getpath(root, path)
        gw = (g === nothing || g.weight === nothing) ? zero(d.weight) : g.weight
        gb = (g === nothing || g.bias === nothing) ? zero(d.bias) : g.bias
        out["grad.$name.weight"] = weight_out(gw)
        out["grad.$name.bias"] = gb
    end
end

"Current weights of every Dense under `top`; `root` is that object (updated in place)."
function params_out!(out, root, reg, top)
    for (name, path) in entries(reg, top)
        d = getpath(root, path)
        out["params.$name.weight"] = weight_out(d.weight)
        out["params.$name.bias"] = d.bias
    end
end

"Adam moments of every Dense under `top`; `opt` is the optimiser tree of that object."
function adam_out!(out, opt, reg, top)
    for (name, path) in entries(reg, top)
        node = getpath(opt, path)
        mw, vw, _ = node.weight.state
        mb, vb, _ = node.bias.state
        out["adam.$name.weight.m"] = weight_out(mw)
        out["adam.$name.weight.v"] = weight_out(vw)
        out["adam.$name.bias.m"] = mb
        out["adam.$name.bias.v"] = vb
    end
end

function run_op(case, M, reg, X, kw)
    op = case["op"]
    seed = Int(case["julia_seed"])
    out = Dict{String,Any}()
    x = get(X, "x", nothing)
    x_out = get(X, "x_out", nothing)

    if op == "chain_forward"
        Random.seed!(seed)
        out["y"] = M["chain"](x)
    elseif op == "encoder_forward"
        Random.seed!(seed)
        named_outputs!(out, "", M["encoder"](x))
    elseif op == "decoder_forward"
        Random.seed!(seed)
        named_outputs!(out, "", M["decoder"](X["z"]))
    elseif op == "spherical_logprior"
        out["logprior"] = AET.spherical_logprior(X["z"])
    elseif op == "encoder_kl"
        enc_out = NamedTuple{(MU, LOGSIGMA)}((X["mu"], X["logsigma"]))
        out["kl"] = AET.encoder_kl(dummy_log_encoder(), enc_out)
    elseif op == "encoder_logposterior"
        enc_out = NamedTuple{(MU, LOGSIGMA)}((X["mu"], X["logsigma"]))
        if get(kw, "index", nothing) === nothing
            out["logposterior"] = AET.encoder_logposterior(X["z"], dummy_log_encoder(), enc_out)
        else
            out["logposterior"] = AET.encoder_logposterior(
                X["z"], dummy_log_encoder(), enc_out, Int(kw["index"]) + 1)
        end
    elseif op == "decoder_loglikelihood"
        T = kw["decoder_type"]
        fields = DECODER_OUTPUT_FIELDS[T]
        dec_out = NamedTuple{Tuple(jkey(f) for f in fields)}(Tuple(X[f] for f in fields))
        dkw = NamedTuple()
        get(kw, "sigma", nothing) !== nothing && (dkw = merge(dkw, (σ=f32(kw["sigma"]),)))
        get(kw, "dims", nothing) !== nothing && (dkw = merge(dkw, (dims=Int(kw["dims"]),)))
        dec = dummy_decoder(T)
        if get(kw, "index", nothing) === nothing
            out["loglikelihood"] = AET.decoder_loglikelihood(x, X["z"], dec, dec_out; dkw...)
        else
            out["loglikelihood"] = AET.decoder_loglikelihood(
                x, X["z"], dec, dec_out, Int(kw["index"]) + 1; dkw...)
        end
    elseif op == "reparameterize"
        use_log = Bool(get(kw, "log", true))
        Random.seed!(seed)
        out["z"] = VAEs.reparameterize(X["mu"], use_log ? X["logsigma"] : X["sigma"]; log=use_log)
    elseif op == "shuffle_latent"
        Random.seed!(seed)
        out["z_shuffle"] = IMV.shuffle_latent(X["z"]; seed_kw(kw)...)
    elseif op == "mi_forward"
        out["g"] = M["mi"](x, X["z"])
    elseif op == "variational_mutual_info"
        out["mi"] = IMV.variational_mutual_info(M["mi"], x, X["z"], X["z_shuffle"])
    elseif op == "vae_forward"
        Random.seed!(seed)
        vo = M["vae"](x; latent=true)
        named_outputs!(out, "encoder.", vo.encoder)
        out["z"] = vo.z
        named_outputs!(out, "decoder.", vo.decoder)
    elseif op == "infomaxvae_forward"
        imv = IMV.InfoMaxVAE(M["vae"], M["mi"])
        Random.seed!(seed)
        res = imv(x; latent=true, seed_kw(kw)...)
        named_outputs!(out, "encoder.", res.vae.encoder)
        out["z"] = res.vae.z
        named_outputs!(out, "decoder.", res.vae.decoder)
        out["mi"] = res.mi
    elseif op == "variational_mutual_info_model"
        imv = IMV.InfoMaxVAE(M["vae"], M["mi"])
        Random.seed!(seed)
        out["mi"] = IMV.variational_mutual_info(imv, x; seed_kw(kw)...)
    elseif op == "infomaxloss"
        lkw = loss_kwargs(kw)
        Random.seed!(seed)
        if x_out === nothing
            out["loss"] = IMV.infomaxloss(M["vae"], M["mi"], x; lkw...)
        else
            out["loss"] = IMV.infomaxloss(M["vae"], M["mi"], x, x_out; lkw...)
        end
    elseif op == "infomaxloss_gradient"
        lkw = loss_kwargs(kw)
        mi = M["mi"]
        Random.seed!(seed)
        L, g = Flux.withgradient(M["vae"]) do v
            if x_out === nothing
                IMV.infomaxloss(v, mi, x; lkw...)
            else
                IMV.infomaxloss(v, mi, x, x_out; lkw...)
            end
        end
        out["loss"] = L
        grads_out!(out, g[1], M["vae"], reg, :vae)
    elseif op == "miloss"
        mkw = mi_kwargs(kw)
        Random.seed!(seed)
        out["loss"] = IMV.miloss(M["vae"], M["mi"], x; mkw...)
    elseif op == "miloss_gradient"
        mkw = mi_kwargs(kw)
        vae = M["vae"]
        Random.seed!(seed)
        L, g = Flux.withgradient(m -> IMV.miloss(vae, m, x; mkw...), M["mi"])
        out["loss"] = L
        grads_out!(out, g[1], M["mi"], reg, :mi)
    elseif op == "vae_loss"
        vkw = vae_kwargs(kw)
        Random.seed!(seed)
        if x_out === nothing
            out["loss"] = VAEs.loss(M["vae"], x; vkw...)
        else
            out["loss"] = VAEs.loss(M["vae"], x, x_out; vkw...)
        end
    elseif op == "vae_loss_gradient"
        vkw = vae_kwargs(kw)
        Random.seed!(seed)
        L, g = Flux.withgradient(M["vae"]) do v
            if x_out === nothing
                VAEs.loss(v, x; vkw...)
            else
                VAEs.loss(v, x, x_out; vkw...)
            end
        end
        out["loss"] = L
        grads_out!(out, g[1], M["vae"], reg, :vae)
    elseif op == "infomax_train"
        imv = IMV.InfoMaxVAE(M["vae"], M["mi"])
        rule = Flux.Optimisers.Adam(Float64(get(kw, "eta", 1e-3)), (0.9, 0.999), 1e-8)
        opt = Flux.Train.setup(rule, imv)
        ikw = (β=f32(get(kw, "beta", 1.0)), α=f32(get(kw, "alpha", 1.0)))
        lv, lm = Float32[], Float32[]
        Random.seed!(seed)
        for _ in 1:Int(get(kw, "steps", 1))
            if x_out === nothing
                a, b = IMV.train!(imv, x, opt; infomaxloss_kwargs=ikw, loss_return=true)
            else
                a, b = IMV.train!(imv, x, x_out, opt; infomaxloss_kwargs=ikw, loss_return=true)
            end
            push!(lv, a)
            push!(lm, b)
        end
        out["loss_vae"] = lv
        out["loss_mi"] = lm
        for top in (:vae, :mi)
            # update! mutates the arrays in place; opt is the tree (vae = ..., mi = ...)
            params_out!(out, getproperty(imv, top), reg, top)
            adam_out!(out, getproperty(opt, top), reg, top)
        end
    elseif op == "vae_train"
        vae = M["vae"]
        rule = Flux.Optimisers.Adam(Float64(get(kw, "eta", 1e-3)), (0.9, 0.999), 1e-8)
        opt = Flux.Train.setup(rule, vae)
        lkw = (β=f32(get(kw, "beta", 1.0)),)
        losses = Float32[]
        Random.seed!(seed)
        for _ in 1:Int(get(kw, "steps", 1))
            if x_out === nothing
                L = VAEs.train!(vae, x, opt; loss_kwargs=lkw, loss_return=true)
            else
                L = VAEs.train!(vae, x, x_out, opt; loss_kwargs=lkw, loss_return=true)
            end
            push!(losses, L)
        end
        out["loss"] = losses
        params_out!(out, vae, reg, :vae)
        adam_out!(out, opt, reg, :vae)
    elseif op == "infomax_train_fused"
        # the port's fused step has no counterpart in the reference: nothing is run, and
        # only the draws (recorded by `process`) are compared
    elseif op == "mutual_info_chain_constructor"
        si = kw["size_input"]
        size_input = si isa AbstractVector ? Int[Int(s) for s in si] : Int(si)
        acts = Function[ACTIVATIONS[a] for a in kw["mlp_activation"]]
        IMV.MutualInfoChain(size_input, Int(kw["n_latent"]), Int[Int(n) for n in kw["mlp_neurons"]],
                            acts, ACTIVATIONS[get(kw, "output_activation", "identity")])
        out["constructed"] = 1
    else
        error("unknown op $op")
    end
    return out
end

# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

function process(path)
    case = plain(JSON3.read(read(path, String)))
    name = case["name"]
    kw = something(get(case, "kwargs", nothing), Dict{String,Any}())
    X = Dict{String,Any}(k => decode(v) for (k, v) in something(get(case, "inputs", nothing),
                                                                 Dict{String,Any}()))
    drawn = replay_draws(case)
    match = draws_match(case, drawn)
    outputs = Dict{String,Any}()
    err = nothing
    try
        M, reg = build_models(case)
        outputs = run_op(case, M, reg, X, kw)
    catch e
        err = Dict{String,Any}("exception" => string(nameof(typeof(e))),
                               "message" => sprint(showerror, e))
    end
    result = Dict{String,Any}(
        "format" => OUTPUT_FORMAT,
        "name" => name,
        "op" => case["op"],
        "julia_version" => string(VERSION),
        "packages" => Dict{String,Any}("AutoEncoderToolkit" => string(pkgversion(AET)),
                                       "Flux" => string(pkgversion(Flux))),
        "julia_seed" => case["julia_seed"],
        "draw_values" => Dict{String,Any}(k => encode(v) for (k, v) in drawn),
        "draws_match_case" => match,
        "outputs" => Dict{String,Any}(k => encode(v) for (k, v) in outputs),
        "error" => err,
        "reference_error_expected" => get(case, "reference_error", nothing),
    )
    mkpath(OUT_DIR)
    open(joinpath(OUT_DIR, name * ".json"), "w") do io
        JSON3.write(io, result)
        println(io)
    end
    status = err === nothing ? "ok" : "raised $(err["exception"])"
    println(rpad(name, 48), rpad(status, 28), "draws match: ", match)
    return result
end

function main(args)
    if VERSION < v"1.11" || VERSION >= v"1.13"
        @warn "the case files assume Julia 1.11/1.12 random streams; this is Julia $VERSION"
    end
    if !isdir(CASES_DIR)
        println("no case directory $CASES_DIR")
        return
    end
    files = sort(filter(f -> endswith(f, ".json"), readdir(CASES_DIR; join=true)))
    if !isempty(args)
        wanted = Set(args)
        files = filter(f -> splitext(basename(f))[1] in wanted, files)
    end
    isempty(files) && println("no case files in $CASES_DIR")
    for f in files
        process(f)
    end
end

main(ARGS)
