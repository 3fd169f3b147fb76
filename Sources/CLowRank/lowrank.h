/*
 * lowrank.h: the C ABI of the LowRank engine (libLowRankC.so, the LowRankC product).
 *
 * Fine-tune Llama-family models with LoRA, rsLoRA or DoRA adapters (optionally on NF4, Q8_0 or
 * Q4_0 base weights) from any language that calls C: load a model, attach an adapter, take
 * training steps on caller-owned token buffers, read and write the adapter's tensors, and save it
 * in PEFT's format; tokenize text, render chat templates and generate with the adapter.
 *
 * Conventions
 * - Every function returns a lowrank_status. On failure, lowrank_last_error() gives a sentence
 *   naming what was wrong (the file, tensor, shape or value); nothing is written to out-pointers.
 *   No entry point aborts the process on bad input: a null pointer, an unknown or closed handle,
 *   a bad shape or value is a status, never a crash.
 * - Handles are 64-bit numbers, never reused, so a closed one is recognised as closed (0 is never
 *   a handle). Closing an engine closes its models.
 * - Calls on one model are serialised by the engine; calls on different models may run in
 *   parallel.
 * - Strings are UTF-8 and NUL-terminated. A function that returns a string copies it into the
 *   caller's buffer (capacity bytes, NUL included) and sets *length to its length without the
 *   NUL; when the buffer is too small it returns LOWRANK_BUFFER_TOO_SMALL with *length set, so
 *   the caller can retry.
 */
#ifndef LOWRANK_H
#define LOWRANK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to this header. */
#define LOWRANK_ABI_VERSION 1

typedef enum lowrank_status {
    LOWRANK_OK = 0,
    LOWRANK_INVALID_ARGUMENT = 1,   /* a null pointer, a value out of range, a bad option */
    LOWRANK_INVALID_HANDLE = 2,     /* an unknown handle, or one already closed */
    LOWRANK_SHAPE_MISMATCH = 3,
    LOWRANK_DTYPE_MISMATCH = 4,
    LOWRANK_DEVICE_UNAVAILABLE = 5,
    LOWRANK_UNSUPPORTED = 6,
    LOWRANK_OUT_OF_MEMORY = 7,
    LOWRANK_DEVICE_ERROR = 8,       /* Vulkan or shader compilation failed */
    LOWRANK_FILE_FORMAT = 9,        /* a file that is missing fields, malformed or inconsistent */
    LOWRANK_IO = 10,                /* a file that cannot be read or written */
    LOWRANK_NUMERICAL = 11,         /* the loss became NaN or infinite */
    LOWRANK_BUFFER_TOO_SMALL = 12,
    LOWRANK_STATE = 13              /* a call out of order: a step before an adapter is attached */
} lowrank_status;

typedef uint64_t lowrank_engine;
typedef uint64_t lowrank_model;

/* LOWRANK_ABI_VERSION of the library that is loaded. */
uint32_t lowrank_abi_version(void);

/* The engine's version ("0.1.0"); a static string. */
const char *lowrank_version(void);

/* The message of the calling thread's last failed call, or "" after a successful one. Valid
 * until the thread's next call into the library. */
const char *lowrank_last_error(void);

/* ------------------------------------------------------------------------------------------ */
/* Engines: a device to run on. */

/* Every device the engine sees, as `lowrank devices --json` lists them: a JSON object
 * {"devices": [{"identifier", "name", "kind"}, ...], "selected": the one "auto" picks,
 * "vulkan_problem": why Vulkan is unusable, or null}. */
int32_t lowrank_devices(int32_t validation, char *buffer, size_t capacity, size_t *length);

/* device: NULL or "auto" (the best GPU Vulkan sees, else the CPU backend), "cpu", "vulkan", or
 * "vulkan:N". validation: nonzero turns on the Khronos validation layer (with synchronization
 * validation); its messages are then failures of the call that caused them. */
int32_t lowrank_engine_open(const char *device, int32_t validation, lowrank_engine *engine);

/* The device the engine runs on: "vulkan:0 (llvmpipe (LLVM 15.0.6, 256 bits))", "cpu (...)". */
int32_t lowrank_engine_device(lowrank_engine engine, char *buffer, size_t capacity, size_t *length);

/* Closes the engine and every model it holds. */
int32_t lowrank_engine_close(lowrank_engine engine);

/* ------------------------------------------------------------------------------------------ */
/* Models. */

/* A Hugging Face checkpoint folder (config.json, model.safetensors or shards with
 * model.safetensors.index.json; f32, f16 or bf16), or a .gguf file of the llama architecture
 * (F32, F16, BF16; Q8_0 and Q4_0 matrices stay quantized). quantize: NULL, "nf4", "q8_0" or
 * "q4_0" quantizes the frozen float projections at load. */
int32_t lowrank_model_load(lowrank_engine engine, const char *path, const char *quantize, lowrank_model *model);

/* The built-in default model of `lowrank train`: a byte-level (vocabulary 256), 2-block, d = 64
 * Llama with fixed random weights. */
int32_t lowrank_model_create_default(lowrank_engine engine, lowrank_model *model);

/* The model's config as Hugging Face names it: a JSON object with "model_type", "vocab_size",
 * "hidden_size", "num_hidden_layers", ... */
int32_t lowrank_model_config(lowrank_model model, char *buffer, size_t capacity, size_t *length);

/* Frees the model (its weights, adapter, optimizer state and plans); the handle is then reported as
 * closed. Closing its engine closes it too. */
int32_t lowrank_model_close(lowrank_model model);

/* The built-in byte-level corpus `lowrank train` trains the default model on (UTF-8 text; each
 * byte is one token). */
int32_t lowrank_default_corpus(char *buffer, size_t capacity, size_t *length);

/* ------------------------------------------------------------------------------------------ */
/* Adapters: the options of `lowrank train`, in PEFT's format. */

typedef struct lowrank_adapter_options {
    uint32_t size;          /* sizeof(lowrank_adapter_options), set by lowrank_adapter_options_init */
    int32_t r;              /* rank, 1 to 65536; default 8 */
    float alpha;            /* lora_alpha; default 16 (the scale is alpha/r, or alpha/sqrt(r)) */
    float dropout;          /* lora_dropout on the adapter's input, in [0, 1); default 0 */
    int32_t rslora;         /* nonzero: rsLoRA scaling */
    int32_t dora;           /* nonzero: DoRA, a trained magnitude per output row */
    const char *targets;    /* "q_proj,v_proj" (the default, also for NULL), any comma-separated
                               list of module names, or "all-linear" */
    uint64_t seed;          /* seed of A's initialisation (and of pissa_niter_N's randomized SVD); default 0 */
    const char *peft_config; /* NULL, or a JSON object of PEFT's other LoraConfig fields, as
                               adapter_config.json holds them: init_lora_weights (true, "gaussian",
                               "pissa", "pissa_niter_N", "olora", "loftq"; "eva" and
                               "corda" with lowrank_model_add_adapter_with_data), eva_config,
                               corda_config, rank_pattern, alpha_pattern,
                               layers_to_transform, layers_pattern, exclude_modules, bias,
                               trainable_token_indices, modules_to_save, ensure_weight_tying,
                               loftq_config ({"loftq_iter": N} for init_lora_weights "loftq"). Fields
                               the members above set (r, lora_alpha, ...) are refused here. */
} lowrank_adapter_options;

/* Fills *options with the defaults above. */
int32_t lowrank_adapter_options_init(lowrank_adapter_options *options);

/* Attaches a new adapter (B = 0, so the model is unchanged until it trains). A model holds one
 * adapter; attaching or loading another replaces it and resets training. */
int32_t lowrank_model_add_adapter(lowrank_model model, const lowrank_adapter_options *options);

/* Attaches a new adapter started from data: init_lora_weights "eva" (PEFT's initialize_lora_eva_weights,
 * with eva_config) or "corda" (PEFT's preprocess_corda, with corda_config), given with those fields in
 * options->peft_config as adapter_config.json holds them. The data is rows x sequence token ids
 * (row-major int32) and labels (NULL: the ids; -100 marks positions EVA leaves out with
 * use_label_mask): EVA reads it in order in batches of batch_size rows, cycled until its directions
 * converge, the ranks it redistributes becoming the adapter's rank_pattern; CorDA forwards each row
 * alone and splits each weight as PiSSA does. */
int32_t lowrank_model_add_adapter_with_data(lowrank_model model, const lowrank_adapter_options *options, const int32_t *input_ids,
                                            const int32_t *labels, int64_t rows, int64_t sequence, int64_t batch_size);

/* Attaches the PEFT adapter saved in folder (adapter_config.json, adapter_model.safetensors;
 * F32, F16 or BF16), as `lowrank train --init-adapter` does. An adapter whose
 * base_model_name_or_path names another folder (by its last path component), or whose recorded
 * architecture is another, is refused (LOWRANK_INVALID_ARGUMENT). */
int32_t lowrank_model_load_adapter(lowrank_model model, const char *folder);

/* lowrank_model_load_adapter without the base model and architecture check, as
 * `--force-adapter` does; the tensors' names and shapes are still checked. */
int32_t lowrank_model_load_adapter_forced(lowrank_model model, const char *folder);

/* Writes adapter_config.json and adapter_model.safetensors (f32) into folder, each atomically;
 * PEFT's PeftModel.from_pretrained loads them. */
int32_t lowrank_model_save_adapter(lowrank_model model, const char *folder);

/* The adapter's tensors, by PEFT's names (base_model.model.<module>.lora_A.weight, .lora_B.weight,
 * .lora_magnitude_vector), in model order. */
int32_t lowrank_model_adapter_tensor_count(lowrank_model model, int64_t *count);
/* The name of tensor index, 0 <= index < the count above (a string, as the functions above write them). */
int32_t lowrank_model_adapter_tensor_name(lowrank_model model, int64_t index, char *buffer, size_t capacity, size_t *length);
/* shape receives up to 4 dimensions; *rank says how many there are. */
int32_t lowrank_model_adapter_tensor_shape(lowrank_model model, const char *name, int64_t shape[4], int32_t *rank);
/* Copies a tensor out as f32; count must be the tensor's element count. */
int32_t lowrank_model_read_adapter_tensor(lowrank_model model, const char *name, float *values, int64_t count);
/* Overwrites a tensor with count f32 values; count must be the tensor's element count. */
int32_t lowrank_model_write_adapter_tensor(lowrank_model model, const char *name, const float *values, int64_t count);

/* ------------------------------------------------------------------------------------------ */
/* Training: the options of `lowrank train`. */

typedef enum lowrank_schedule {
    LOWRANK_SCHEDULE_CONSTANT = 0,
    LOWRANK_SCHEDULE_LINEAR = 1,
    LOWRANK_SCHEDULE_COSINE = 2
} lowrank_schedule;

typedef struct lowrank_training_options {
    uint32_t size;                  /* sizeof(lowrank_training_options), set by lowrank_training_options_init */
    int32_t schedule;               /* a lowrank_schedule after warm-up; default constant */
    double learning_rate;           /* peak learning rate; default 2e-4 */
    int64_t warmup_steps;           /* linear warm-up; default 0 */
    int64_t total_steps;            /* the schedule's length: needed by linear and cosine; 0: none */
    double weight_decay;            /* AdamW's decoupled weight decay; default 0.01 */
    float max_grad_norm;            /* clip the global gradient norm to this; 0: no clipping */
    int32_t gradient_checkpointing; /* nonzero: recompute each block's activations in backward */
    uint64_t seed;                  /* seeds the dropout masks (with the step number); default 0 */
    double loraplus_lr_ratio;       /* LoRA+ (PEFT's create_loraplus_optimizer): B's learning rate is
                                       this times learning_rate; 0: off (the default) */
    const char *residual_dtype;     /* the hidden state between decoder blocks held in "f32", "bf16"
                                       or "f16" (`lowrank train --residual-dtype`); NULL or "": the
                                       frozen weights' compute dtype (bf16 for a bf16 checkpoint, also
                                       quantized to NF4; f32 for f32 and GGUF-quantized ones) */
    const char *matmul_precision;   /* how products with the frozen weights compute, on the model's
                                       backend (every model on it, evaluation and generation too;
                                       `lowrank train --precision`): "highest" (exact f32), "high" or
                                       "medium" (on the CPU, a bf16 weight multiplies activations
                                       rounded to bf16, f32 sums); NULL: unchanged (at first
                                       LOWRANK_MATMUL_PRECISION, else the backend's default: medium
                                       on the CPU, highest on Vulkan) */
} lowrank_training_options;

/* Fills *options with the defaults above (PyTorch's AdamW: betas 0.9/0.999, eps 1e-8). */
int32_t lowrank_training_options_init(lowrank_training_options *options);

/* Sets how lowrank_model_step trains, and starts a new optimizer (moments and step count zero;
 * the adapter's tensors are kept). Without it, the first step uses the defaults. */
int32_t lowrank_model_set_training(lowrank_model model, const lowrank_training_options *options);

/* One training step on a batch of rows x sequence token ids (row-major int32): the forward pass
 * with the mean next-token cross-entropy, the backward pass, and an AdamW step of the adapter.
 * labels: NULL to predict every next token, or rows x sequence labels as transformers takes them
 * (unshifted; -100 where nothing is predicted, such as right padding). *loss receives the
 * batch's loss. Ids and labels are checked against the vocabulary. */
int32_t lowrank_model_step(lowrank_model model, const int32_t *input_ids, const int32_t *labels,
                           int64_t rows, int64_t sequence, float *loss);

/* The step in two parts, for gradient accumulation. forward_backward runs the forward pass with
 * the loss and the backward pass on a micro-batch (arguments as lowrank_model_step) and adds its
 * gradients to those since the last optimizer step, weighted by its predicted tokens, so that
 * micro-batches step as one batch of all their rows would; *loss receives the micro-batch's loss.
 * optimizer_step then takes the AdamW step with them; *loss receives the step's loss, the mean
 * over every predicted token of its micro-batches. lowrank_model_step is both in one call. */
int32_t lowrank_model_forward_backward(lowrank_model model, const int32_t *input_ids, const int32_t *labels,
                                       int64_t rows, int64_t sequence, float *loss);
/* The AdamW step on the gradients the micro-batches since the last step added (see above). */
int32_t lowrank_model_optimizer_step(lowrank_model model, float *loss);

/* Packed rows, as transformers takes them without padding (DataCollatorWithFlattening): step,
 * forward_backward and loss (below) with position_ids, rows x sequence int32, each sequence's
 * positions counting up from 0. A position 0 begins a new sequence: attention and RoPE positions
 * restart there, and the token before it does not predict it, so the loss is that of the
 * sequences unpacked. A row begins at 0; any other position is 0 or one more than the one before. */
int32_t lowrank_model_step_packed(lowrank_model model, const int32_t *input_ids, const int32_t *labels,
                                  const int32_t *position_ids, int64_t rows, int64_t sequence, float *loss);
/* lowrank_model_forward_backward on packed rows (see above). */
int32_t lowrank_model_forward_backward_packed(lowrank_model model, const int32_t *input_ids, const int32_t *labels,
                                              const int32_t *position_ids, int64_t rows, int64_t sequence, float *loss);

/* Gradients out of and into the engine, for a script that all-reduces them itself (torch.distributed,
 * mpi4py) between lowrank_model_forward_backward and lowrank_model_optimizer_step, as mpirun ranks
 * do inside the engine. The vector fuses every adapter tensor's gradient as f32, in the order of
 * lowrank_model_adapter_tensor_name, each flattened row-major.
 * gradient_count gives its length (*count); the other two take that length as count. */
int32_t lowrank_model_gradient_count(lowrank_model model, int64_t *count);
/* Copies the gradients accumulated since the last optimizer step into values, as sums weighted
 * by each micro-batch's predicted tokens, and the tokens they are weighted by into *tokens: adding
 * the vectors and counts of several processes gives those of all their micro-batches as one batch.
 * With nothing accumulated, zeros and 0 tokens (a process with no rows in a step still joins it). */
int32_t lowrank_model_gradients(lowrank_model model, float *values, int64_t count, double *tokens);
/* Replaces the accumulated gradients with values (as lowrank_model_gradients gives them, typically
 * summed over processes) weighted by tokens, a whole number; the next optimizer step divides by it.
 * A NaN or infinity is refused, naming the tensor. The optimizer step's loss stays this process's own
 * mean over its micro-batches (0 with none). */
int32_t lowrank_model_set_gradients(lowrank_model model, const float *values, int64_t count, double tokens);

/* Writes a checkpoint into folder, whole or not at all (built beside it and renamed): the
 * adapter in PEFT's format, the optimizer's moments (optimizer.safetensors) and trainer_state.json
 * with the step and every loss so far. Gradients accumulated without their optimizer step would be
 * lost, so a checkpoint then is refused. */
int32_t lowrank_model_save_checkpoint(lowrank_model model, const char *folder);

/* Continues from a checkpoint: attaches its adapter and restores the optimizer's moments, the
 * step and the losses, under the current training options (set them as the run that wrote it
 * had them), so the steps that follow are those of an unbroken run. */
int32_t lowrank_model_load_checkpoint(lowrank_model model, const char *folder);

/* The steps taken since the training was set. */
int32_t lowrank_model_step_count(lowrank_model model, int64_t *steps);

/* The loss of a batch without training (the adapter applied, if any; no dropout). */
int32_t lowrank_model_loss(lowrank_model model, const int32_t *input_ids, const int32_t *labels,
                           int64_t rows, int64_t sequence, float *loss);
/* lowrank_model_loss on packed rows, position_ids as lowrank_model_step_packed's. */
int32_t lowrank_model_loss_packed(lowrank_model model, const int32_t *input_ids, const int32_t *labels,
                                  const int32_t *position_ids, int64_t rows, int64_t sequence, float *loss);

/* ------------------------------------------------------------------------------------------ */
/* Text: Hugging Face tokenizers and chat templates, and generation (`lowrank generate`). */

typedef uint64_t lowrank_tokenizer;

/* A model folder's tokenizer.json (with tokenizer_config.json's special tokens and the folder's chat
 * template, chat_template.jinja or tokenizer_config.json's chat_template, if it has one), or a
 * tokenizer.json file, or a GGUF file's tokenizer metadata. A tokenizer belongs to no engine; close it
 * with lowrank_tokenizer_close. */
int32_t lowrank_tokenizer_load(const char *path, lowrank_tokenizer *tokenizer);

/* The tokenizer read with a loaded model (its folder's tokenizer.json, or its GGUF file's tokenizer
 * metadata, with special tokens and chat template): *tokenizer is set to a new handle, or to 0 when
 * the model has none (the built-in model, a weights-only GGUF file). Close the handle with
 * lowrank_tokenizer_close; the model keeps its own. A tokenizer present but unreadable is the error
 * it raised (the model still loaded and trains on token ids). */
int32_t lowrank_model_tokenizer(lowrank_model model, lowrank_tokenizer *tokenizer);

/* Encodes text_length bytes of UTF-8 text (which may hold NUL characters) as the tokenizers library
 * does; add_special_tokens nonzero adds the post-processor's BOS/EOS. ids receives the ids and
 * *count their number; when capacity is too small the call returns LOWRANK_BUFFER_TOO_SMALL with
 * *count set, so the caller can retry. */
int32_t lowrank_tokenizer_encode(lowrank_tokenizer tokenizer, const char *text, size_t text_length, int32_t add_special_tokens,
                                 int32_t *ids, int64_t capacity, int64_t *count);

/* The text of count ids (a string, as above); skip_special_tokens nonzero leaves special tokens out. */
int32_t lowrank_tokenizer_decode(lowrank_tokenizer tokenizer, const int32_t *ids, int64_t count, int32_t skip_special_tokens,
                                 char *buffer, size_t capacity, size_t *length);

/* Renders messages, a JSON list of {"role", "content"} objects, with the chat template as
 * transformers' apply_chat_template(tokenize=False) does (a string, as above); add_generation_prompt
 * nonzero ends it with the assistant's turn opening. LOWRANK_FILE_FORMAT without a template. */
int32_t lowrank_tokenizer_apply_chat_template(lowrank_tokenizer tokenizer, const char *messages, int32_t add_generation_prompt,
                                              char *buffer, size_t capacity, size_t *length);

/* One training example as `lowrank train --data` reads a JSONL line: example is a JSON object
 * {"text"} (EOS appended), {"prompt", "completion"} or {"messages"} (with a chat template; the loss on
 * the completion only unless train_on_prompt is nonzero), tokenized as TRL's SFTTrainer does, or
 * {"input_ids"[, "labels"]}. ids and labels (unshifted, -100 where not trained on) receive capacity
 * values each and *count their number; when capacity is too small the call returns
 * LOWRANK_BUFFER_TOO_SMALL with *count set. tokenizer 0 (none) reads {"input_ids"} only. A bad
 * example is LOWRANK_FILE_FORMAT with a message naming the field. */
int32_t lowrank_tokenizer_encode_example(lowrank_tokenizer tokenizer, const char *example, int32_t train_on_prompt,
                                         int32_t *ids, int32_t *labels, int64_t capacity, int64_t *count);

/* A JSON object {"vocab_size", "bos_token_id", "eos_token_id", "pad_token_id" (null when absent),
 * "has_chat_template"} (a string, as above). */
int32_t lowrank_tokenizer_info(lowrank_tokenizer tokenizer, char *buffer, size_t capacity, size_t *length);

/* Frees the tokenizer; the handle is then reported as closed. */
int32_t lowrank_tokenizer_close(lowrank_tokenizer tokenizer);

typedef struct lowrank_generation_options {
    uint32_t size;          /* sizeof(lowrank_generation_options), set by lowrank_generation_options_init */
    int64_t max_new_tokens; /* tokens to generate at most; default 256 */
    float temperature;      /* 0 (the default): greedy, as transformers' do_sample=False */
    int32_t top_k;          /* keep the k most probable tokens; 0 (default): all */
    float top_p;            /* keep the most probable tokens up to this probability; 1 (default): all */
    uint64_t seed;          /* seed of the draws; default 0 */
} lowrank_generation_options;

/* Fills *options with the defaults above. */
int32_t lowrank_generation_options_init(lowrank_generation_options *options);

/* The ids that end a generation by default: the model folder's generation_config.json eos_token_id
 * (else config.json's), its tokenizer's EOS and its chat template's end-of-turn token (<|im_end|>,
 * <|eot_id|>, ...). ids and the counts as lowrank_tokenizer_encode's. */
int32_t lowrank_model_stop_tokens(lowrank_model model, int32_t *ids, int64_t capacity, int64_t *count);

/* Generates after the prompt's prompt_count ids with the model and its adapter (unmerged, no
 * dropout), with a KV cache: the prompt is run once, then one token per step. stop_ids: NULL for
 * lowrank_model_stop_tokens's, else stop_count ids (0 for none); a stop id ends the generation
 * and is its last id. ids receives the generated ids (capacity at least options->max_new_tokens)
 * and *count their number. options: NULL for the defaults. */
int32_t lowrank_model_generate(lowrank_model model, const int32_t *prompt, int64_t prompt_count,
                               const lowrank_generation_options *options, const int32_t *stop_ids, int64_t stop_count,
                               int32_t *ids, int64_t capacity, int64_t *count);

#ifdef __cplusplus
}
#endif

#endif /* LOWRANK_H */
