/* placeholder: being written */
#include "orchestrator/cli.h"
int cmd_tokenize(int argc, char **argv) { (void)argc; (void)argv; cli_error("tokenize", "not built yet"); return CLI_FAIL; }
