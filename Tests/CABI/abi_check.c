/* A C program against lowrank.h and libLowRankC.so: the header and the library agree, a short
 * training run works from C, and bad calls return their status with a message, never a crash.
 * tools/test.sh builds and runs it; it prints what failed and exits non-zero. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowrank.h"

static int failures = 0;

#define EXPECT(condition, ...) do { \
    if (!(condition)) { failures++; fprintf(stderr, "abi_check.c:%d: %s: ", __LINE__, #condition); \
        fprintf(stderr, __VA_ARGS__); fprintf(stderr, " (last error: %s)\n", lowrank_last_error()); } \
} while (0)

int main(void) {
    EXPECT(lowrank_abi_version() == LOWRANK_ABI_VERSION, "ABI %u", lowrank_abi_version());
    EXPECT(strlen(lowrank_version()) > 0, "no version");

    lowrank_engine engine = 0;
    EXPECT(lowrank_engine_open("cpu", 0, &engine) == LOWRANK_OK && engine != 0, "open");
    char small[4];
    size_t length = 0;
    EXPECT(lowrank_engine_device(engine, small, sizeof small, &length) == LOWRANK_BUFFER_TOO_SMALL && length > 3, "length %zu", length);
    char name[256];
    EXPECT(lowrank_engine_device(engine, name, sizeof name, &length) == LOWRANK_OK && strncmp(name, "cpu", 3) == 0, "%s", name);

    lowrank_model model = 0;
    EXPECT(lowrank_model_create_default(engine, &model) == LOWRANK_OK, "default model");
    int32_t ids[2 * 8];
    for (int i = 0; i < 16; i++) ids[i] = (i * 37) % 256;
    float loss = 0;
    EXPECT(lowrank_model_step(model, ids, NULL, 2, 8, &loss) == LOWRANK_STATE, "a step without an adapter");

    lowrank_adapter_options adapter;
    EXPECT(lowrank_adapter_options_init(&adapter) == LOWRANK_OK && adapter.r == 8 && adapter.size == sizeof adapter, "defaults");
    adapter.dora = 1;
    adapter.targets = "all-linear";
    EXPECT(lowrank_model_add_adapter(model, &adapter) == LOWRANK_OK, "add adapter");
    lowrank_training_options training;
    EXPECT(lowrank_training_options_init(&training) == LOWRANK_OK && training.learning_rate == 2e-4 && training.residual_dtype == NULL
           && training.matmul_precision == NULL, "defaults");
    training.residual_dtype = "f8";
    EXPECT(lowrank_model_set_training(model, &training) == LOWRANK_INVALID_ARGUMENT && strstr(lowrank_last_error(), "residual_dtype") != NULL,
           "a residual dtype that is none");
    training.residual_dtype = "";
    EXPECT(lowrank_model_set_training(model, &training) == LOWRANK_OK, "an empty residual dtype: the weights' default");
    training.residual_dtype = NULL;
    training.matmul_precision = "low";
    EXPECT(lowrank_model_set_training(model, &training) == LOWRANK_INVALID_ARGUMENT && strstr(lowrank_last_error(), "matmul_precision") != NULL,
           "a matmul precision that is none");
    training.matmul_precision = "highest";
    training.residual_dtype = "bf16";
    training.learning_rate = 1e-2;
    training.schedule = LOWRANK_SCHEDULE_COSINE;
    EXPECT(lowrank_model_set_training(model, &training) == LOWRANK_INVALID_ARGUMENT, "cosine without a length");
    training.total_steps = 3;
    EXPECT(lowrank_model_set_training(model, &training) == LOWRANK_OK, "set training");
    float losses[3];
    for (int s = 0; s < 3; s++) EXPECT(lowrank_model_step(model, ids, NULL, 2, 8, &losses[s]) == LOWRANK_OK && isfinite(losses[s]), "step %d", s);
    EXPECT(losses[2] < losses[0], "the loss did not fall: %g -> %g", losses[0], losses[2]);
    int64_t steps = 0;
    EXPECT(lowrank_model_step_count(model, &steps) == LOWRANK_OK && steps == 3, "%lld steps", (long long)steps);

    /* Packed rows: each row's two sequences of 4, as two rows of 4 each alone give (the same tokens predicted). */
    int32_t positions[2 * 8], alone[4 * 4];
    for (int i = 0; i < 16; i++) { positions[i] = i % 4; alone[i] = ids[i]; }
    float packed_loss = 0, alone_loss = 0;
    EXPECT(lowrank_model_loss_packed(model, ids, NULL, positions, 2, 8, &packed_loss) == LOWRANK_OK
           && lowrank_model_loss(model, alone, NULL, 4, 4, &alone_loss) == LOWRANK_OK
           && fabsf(packed_loss - alone_loss) <= 1e-5f * alone_loss, "packed %g, alone %g", packed_loss, alone_loss);
    EXPECT(lowrank_model_loss_packed(model, ids, NULL, NULL, 2, 8, &loss) == LOWRANK_INVALID_ARGUMENT, "NULL position ids");
    positions[8] = 1;
    EXPECT(lowrank_model_step_packed(model, ids, NULL, positions, 2, 8, &loss) == LOWRANK_INVALID_ARGUMENT
           && strstr(lowrank_last_error(), "row 1, position 0") != NULL, "a row not beginning at 0: %s", lowrank_last_error());

    /* Generation: greedy by default, with the trained adapter; the built-in model has no stop tokens. */
    lowrank_generation_options generation;
    EXPECT(lowrank_generation_options_init(&generation) == LOWRANK_OK && generation.max_new_tokens == 256
           && generation.temperature == 0 && generation.size == sizeof generation, "defaults");
    generation.max_new_tokens = 8;
    int32_t generated[8], again[8];
    int64_t produced = 0;
    EXPECT(lowrank_model_generate(model, ids, 4, &generation, ids, 0, generated, 8, &produced) == LOWRANK_OK && produced == 8, "generate");
    EXPECT(lowrank_model_generate(model, ids, 4, &generation, NULL, 0, again, 8, &produced) == LOWRANK_OK
           && memcmp(generated, again, sizeof again) == 0, "greedy twice");
    EXPECT(lowrank_model_generate(model, ids, 4, &generation, NULL, 0, again, 4, &produced) == LOWRANK_INVALID_ARGUMENT, "capacity 4");
    EXPECT(lowrank_model_stop_tokens(model, NULL, 0, &produced) == LOWRANK_OK && produced == 0, "%lld stop tokens", (long long)produced);
    lowrank_tokenizer tokenizer = 0;
    EXPECT(lowrank_model_tokenizer(model, &tokenizer) == LOWRANK_OK && tokenizer == 0, "the built-in model has no tokenizer");
    EXPECT(lowrank_tokenizer_load("/nonexistent", &tokenizer) == LOWRANK_IO, "a missing tokenizer");

    /* Training examples as `lowrank train --data` reads JSONL lines (run from the repository root). */
    EXPECT(lowrank_tokenizer_load("Tests/Fixtures/tokenizers/smollm2", &tokenizer) == LOWRANK_OK, "SmolLM2's tokenizer");
    int32_t example_ids[64], example_labels[64];
    int64_t example_count = 0;
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, "{\"text\": \"Hello\"}", 0, example_ids, example_labels, 64, &example_count) == LOWRANK_OK
           && example_count >= 2 && example_ids[example_count - 1] == 2
           && memcmp(example_ids, example_labels, (size_t)example_count * sizeof *example_ids) == 0, "text ends with EOS, all trained on");
    const char *prompt = "{\"prompt\": \"What is 2 + 2?\", \"completion\": \" 4\"}";
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, prompt, 0, example_ids, example_labels, 64, &example_count) == LOWRANK_OK
           && example_count == 11 && example_labels[0] == -100 && example_labels[10] == 2, "the prompt is not trained on");
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, prompt, 1, example_ids, example_labels, 64, &example_count) == LOWRANK_OK
           && example_labels[0] == example_ids[0], "train on the prompt");
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, prompt, 0, example_ids, example_labels, 1, &example_count) == LOWRANK_BUFFER_TOO_SMALL
           && example_count == 11, "capacity 1: %lld", (long long)example_count);
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, "{\"prompt\": \"hi\"}", 0, example_ids, example_labels, 64, &example_count)
           == LOWRANK_FILE_FORMAT && strstr(lowrank_last_error(), "\"completion\"") != NULL, "a prompt without completion");
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, "{\"text\": ", 0, example_ids, example_labels, 64, &example_count)
           == LOWRANK_FILE_FORMAT && strstr(lowrank_last_error(), "not JSON") != NULL, "not JSON");
    EXPECT(lowrank_tokenizer_encode_example(0, "{\"input_ids\": [5, 6], \"labels\": [-100, 6]}", 0, example_ids, example_labels, 64,
                                            &example_count) == LOWRANK_OK && example_count == 2 && example_labels[0] == -100, "token ids without a tokenizer");
    EXPECT(lowrank_tokenizer_encode_example(0, "{\"text\": \"hi\"}", 0, example_ids, example_labels, 64, &example_count) == LOWRANK_FILE_FORMAT
           && strstr(lowrank_last_error(), "needs a tokenizer") != NULL, "text without a tokenizer");
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, NULL, 0, example_ids, example_labels, 64, &example_count) == LOWRANK_INVALID_ARGUMENT,
           "NULL example");
    EXPECT(lowrank_tokenizer_encode_example(tokenizer, prompt, 0, example_ids, example_labels, 64, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL count");
    EXPECT(lowrank_tokenizer_close(tokenizer) == LOWRANK_OK, "close the tokenizer");

    int64_t count = 0;
    EXPECT(lowrank_model_adapter_tensor_count(model, &count) == LOWRANK_OK && count == 2 * 7 * 3, "%lld tensors", (long long)count);
    char tensor[256];
    EXPECT(lowrank_model_adapter_tensor_name(model, 2, tensor, sizeof tensor, &length) == LOWRANK_OK
           && strstr(tensor, "lora_magnitude_vector") != NULL, "%s", tensor);
    int64_t shape[4];
    int32_t rank = 0;
    EXPECT(lowrank_model_adapter_tensor_shape(model, tensor, shape, &rank) == LOWRANK_OK && rank == 1 && shape[0] == 64, "rank %d", rank);
    float magnitude[64];
    EXPECT(lowrank_model_read_adapter_tensor(model, tensor, magnitude, 64) == LOWRANK_OK && magnitude[0] > 0, "read");
    EXPECT(lowrank_model_read_adapter_tensor(model, tensor, magnitude, 63) == LOWRANK_SHAPE_MISMATCH, "a short buffer");
    EXPECT(lowrank_model_write_adapter_tensor(model, tensor, magnitude, 64) == LOWRANK_OK, "write");

    /* Gradients out and back in, as a torch.distributed script all-reduces them. */
    int64_t gradient_count = 0;
    EXPECT(lowrank_model_gradient_count(model, &gradient_count) == LOWRANK_OK && gradient_count > 64, "%lld gradients", (long long)gradient_count);
    float *gradients = calloc((size_t)gradient_count, sizeof *gradients);
    double tokens = -1;
    EXPECT(lowrank_model_gradients(model, gradients, gradient_count, &tokens) == LOWRANK_OK && tokens == 0, "%g tokens before any", tokens);
    EXPECT(lowrank_model_forward_backward(model, ids, NULL, 2, 8, &loss) == LOWRANK_OK, "forward_backward");
    EXPECT(lowrank_model_gradients(model, gradients, gradient_count, &tokens) == LOWRANK_OK && tokens == 14, "%g tokens", tokens);
    EXPECT(lowrank_model_gradients(model, gradients, gradient_count - 1, &tokens) == LOWRANK_SHAPE_MISMATCH, "a short gradient buffer");
    EXPECT(lowrank_model_set_gradients(model, gradients, gradient_count, 1.5) == LOWRANK_INVALID_ARGUMENT, "half a token");
    gradients[0] = NAN;
    EXPECT(lowrank_model_set_gradients(model, gradients, gradient_count, 28) == LOWRANK_NUMERICAL
           && strstr(lowrank_last_error(), "lora_A") != NULL, "a NaN gradient");
    gradients[0] = 0;
    EXPECT(lowrank_model_set_gradients(model, gradients, gradient_count, 28) == LOWRANK_OK, "set gradients");
    EXPECT(lowrank_model_optimizer_step(model, &loss) == LOWRANK_OK && isfinite(loss), "optimizer step");
    free(gradients);

    ids[5] = 256;
    EXPECT(lowrank_model_step(model, ids, NULL, 2, 8, &loss) == LOWRANK_INVALID_ARGUMENT
           && strstr(lowrank_last_error(), "row 0, position 5") != NULL, "an id outside the vocabulary");
    EXPECT(lowrank_model_step(model, NULL, NULL, 2, 8, &loss) == LOWRANK_INVALID_ARGUMENT, "NULL ids");
    EXPECT(lowrank_model_step(model, ids, NULL, -1, 8, &loss) == LOWRANK_SHAPE_MISMATCH, "negative rows");
    EXPECT(lowrank_model_step(model, ids, NULL, INT64_MAX, 8, &loss) == LOWRANK_SHAPE_MISMATCH, "overflowing rows");
    EXPECT(lowrank_model_load(engine, "/nonexistent", NULL, &model) == LOWRANK_IO, "a missing folder");
    EXPECT(lowrank_model_add_adapter(engine, &adapter) == LOWRANK_INVALID_HANDLE
           && strstr(lowrank_last_error(), "is an engine") != NULL, "an engine as a model");
    adapter.r = 1 << 30;
    EXPECT(lowrank_model_add_adapter(model, &adapter) == LOWRANK_INVALID_ARGUMENT, "an absurd rank");
    adapter.r = 8;
    adapter.size = 4;
    EXPECT(lowrank_model_add_adapter(model, &adapter) == LOWRANK_INVALID_ARGUMENT, "a struct of another size");

    /* Every pointer argument, NULL in turn: a status and a message naming it, never a crash. */
    lowrank_model none = 0;
    EXPECT(lowrank_engine_open("cpu", 0, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL engine");
    EXPECT(lowrank_engine_device(engine, NULL, 0, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL length");
    EXPECT(lowrank_engine_device(engine, NULL, 0, &length) == LOWRANK_BUFFER_TOO_SMALL, "NULL buffer");
    EXPECT(lowrank_model_load(engine, NULL, NULL, &none) == LOWRANK_INVALID_ARGUMENT
           && strstr(lowrank_last_error(), "path") != NULL, "NULL path");
    EXPECT(lowrank_model_load(engine, "/nonexistent", NULL, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL model");
    EXPECT(lowrank_model_create_default(engine, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL model");
    EXPECT(lowrank_model_config(model, NULL, 0, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL length");
    EXPECT(lowrank_default_corpus(NULL, 0, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL length");
    EXPECT(lowrank_adapter_options_init(NULL) == LOWRANK_INVALID_ARGUMENT, "NULL options");
    EXPECT(lowrank_model_add_adapter(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL options");
    EXPECT(lowrank_model_load_adapter(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL folder");
    EXPECT(lowrank_model_load_adapter_forced(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL folder");
    EXPECT(lowrank_model_save_adapter(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL folder");
    EXPECT(lowrank_model_save_checkpoint(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL folder");
    EXPECT(lowrank_model_load_checkpoint(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL folder");
    EXPECT(lowrank_model_adapter_tensor_count(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL count");
    EXPECT(lowrank_model_adapter_tensor_name(model, 0, NULL, 0, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL length");
    EXPECT(lowrank_model_adapter_tensor_name(model, -1, tensor, sizeof tensor, &length) == LOWRANK_INVALID_ARGUMENT, "index -1");
    EXPECT(lowrank_model_adapter_tensor_shape(model, NULL, shape, &rank) == LOWRANK_INVALID_ARGUMENT, "NULL name");
    EXPECT(lowrank_model_adapter_tensor_shape(model, tensor, NULL, &rank) == LOWRANK_INVALID_ARGUMENT, "NULL shape");
    EXPECT(lowrank_model_adapter_tensor_shape(model, tensor, shape, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL rank");
    EXPECT(lowrank_model_read_adapter_tensor(model, tensor, NULL, 64) == LOWRANK_INVALID_ARGUMENT, "NULL values");
    EXPECT(lowrank_model_write_adapter_tensor(model, tensor, NULL, 64) == LOWRANK_INVALID_ARGUMENT, "NULL values");
    EXPECT(lowrank_training_options_init(NULL) == LOWRANK_INVALID_ARGUMENT, "NULL options");
    EXPECT(lowrank_model_set_training(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL options");
    EXPECT(lowrank_model_step(model, ids, NULL, 2, 8, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL loss");
    EXPECT(lowrank_model_loss(model, NULL, NULL, 2, 8, &loss) == LOWRANK_INVALID_ARGUMENT, "NULL ids");
    EXPECT(lowrank_model_step_count(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL steps");
    EXPECT(lowrank_model_gradient_count(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL count");
    EXPECT(lowrank_model_gradients(model, NULL, gradient_count, &tokens) == LOWRANK_INVALID_ARGUMENT, "NULL values");
    EXPECT(lowrank_model_gradients(model, magnitude, gradient_count, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL tokens");
    EXPECT(lowrank_model_set_gradients(model, NULL, gradient_count, 1) == LOWRANK_INVALID_ARGUMENT, "NULL values");
    EXPECT(lowrank_generation_options_init(NULL) == LOWRANK_INVALID_ARGUMENT, "NULL options");
    EXPECT(lowrank_model_generate(model, NULL, 4, &generation, NULL, 0, generated, 8, &produced) == LOWRANK_INVALID_ARGUMENT, "NULL prompt");
    EXPECT(lowrank_model_generate(model, ids, 4, &generation, NULL, 0, NULL, 8, &produced) == LOWRANK_INVALID_ARGUMENT, "NULL ids");
    EXPECT(lowrank_model_generate(model, ids, 4, &generation, NULL, 0, generated, 8, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL count");
    EXPECT(lowrank_model_stop_tokens(model, NULL, 0, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL count");
    EXPECT(lowrank_tokenizer_load(NULL, &tokenizer) == LOWRANK_INVALID_ARGUMENT, "NULL path");
    EXPECT(lowrank_model_tokenizer(model, NULL) == LOWRANK_INVALID_ARGUMENT, "NULL tokenizer");
    EXPECT(lowrank_tokenizer_load("/nonexistent", NULL) == LOWRANK_INVALID_ARGUMENT, "NULL tokenizer");
    EXPECT(lowrank_tokenizer_encode(model, "x", 1, 0, generated, 8, &produced) == LOWRANK_INVALID_HANDLE, "a model is not a tokenizer");
    const char bad_utf8[] = {(char)0xC3, 0x28, 0};
    EXPECT(lowrank_model_load_adapter(model, bad_utf8) == LOWRANK_INVALID_ARGUMENT
           && strstr(lowrank_last_error(), "UTF-8") != NULL, "a folder that is not UTF-8");
    EXPECT(lowrank_engine_open("vulkan:99", 0, &none) == LOWRANK_DEVICE_UNAVAILABLE, "a device that is not there");

    EXPECT(lowrank_engine_close(engine) == LOWRANK_OK, "close");
    EXPECT(strcmp(lowrank_last_error(), "") == 0, "a success clears the last error");
    EXPECT(lowrank_model_step(model, ids, NULL, 2, 8, &loss) == LOWRANK_INVALID_HANDLE
           && strstr(lowrank_last_error(), "was closed") != NULL, "a model of a closed engine");
    EXPECT(lowrank_engine_close(engine) == LOWRANK_INVALID_HANDLE, "closing twice");
    EXPECT(lowrank_engine_close(0) == LOWRANK_INVALID_HANDLE, "handle 0");

    if (failures == 0) printf("abi_check: every check passed\n");
    return failures == 0 ? 0 : 1;
}
