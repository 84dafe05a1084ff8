/* A two-input, two-output custom operator for the tests: sum = (a + b) * scale, diff = a - b.
 * It checks the attributes it is given and fails (non-zero) when they are not what the test model sets. */
#include <string.h>
#include "emit_custom_com_example_AddSub.h"

int com_example_AddSub(const emit_custom_node *node, int n_inputs, const emit_custom_input *inputs, int n_outputs,
                       const emit_custom_output *outputs)
{
    const emit_custom_attr *mode = emit_custom_attr_find(node, "mode");
    const emit_custom_attr *axes = emit_custom_attr_find(node, "axes");
    const float scale = emit_custom_attr_float(node, "scale", 1.0f);
    const float *a, *b;
    float *sum, *diff;
    size_t i;
    if (n_inputs != 2 || n_outputs != 2 || inputs[0].size != inputs[1].size || strcmp(inputs[0].dtype, "float32") != 0)
        return 1;
    if (mode == NULL || mode->kind != EMIT_ATTR_STRING || strcmp(mode->s, "plain") != 0)
        return 2;
    if (axes == NULL || axes->kind != EMIT_ATTR_INTS || axes->n != 2 || axes->ints[1] != -1)
        return 3;
    if (emit_custom_attr_int(node, "fail", 0) != 0)
        return 4;
    a = (const float *)inputs[0].data;
    b = (const float *)inputs[1].data;
    sum = (float *)outputs[0].data;
    diff = (float *)outputs[1].data;
    for (i = 0; i < inputs[0].size; ++i) {
        sum[i] = (a[i] + b[i]) * scale;
        diff[i] = a[i] - b[i];
    }
    return 0;
}
