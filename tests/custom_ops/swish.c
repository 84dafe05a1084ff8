#include <math.h>
#include "emit_custom_com_example_Swish.h"

int com_example_Swish(const emit_custom_node *node, int n_inputs, const emit_custom_input *inputs, int n_outputs,
                      const emit_custom_output *outputs)
{
    const float beta = emit_custom_attr_float(node, "beta", 1.0f);
    const float *x = (const float *)inputs[0].data;
    float *y = (float *)outputs[0].data;
    size_t i;
    if (n_inputs != 1 || n_outputs != 1)
        return 1;
    for (i = 0; i < inputs[0].size; ++i)
        y[i] = x[i] / (1.0f + expf(-beta * x[i]));
    return 0;
}
