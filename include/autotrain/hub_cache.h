// Models named by their Hugging Face Hub id ("Qwen/Qwen3-8B", as AutoTrain configs name them), read from the
// local Hugging Face cache that `hf download` / transformers filled. Nothing is downloaded: a model that is not
// in the cache is an error saying how to fetch it.
#pragma once

#include <optional>
#include <string>

namespace autotrain {

// huggingface_hub's cache folder (constants.py): $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub,
// where HF_HOME defaults to $XDG_CACHE_HOME/huggingface and XDG_CACHE_HOME to ~/.cache.
std::string hub_cache_dir();

// Whether `name` is a valid Hub model id (huggingface_hub's validate_repo_id): "name" or "namespace/name", each
// part 1-96 of [A-Za-z0-9_.-] starting and ending with a letter, digit or '_', no "--" or "..", no ".git" end.
bool is_hub_repo_id(const std::string& name);

// The snapshot folder of `repo_id` at its cached "main" revision (try_to_load_from_cache with revision None:
// refs/main names a commit whose folder is under snapshots/), or nullopt. `repo_type`: "models" or "datasets".
std::optional<std::string> cached_hub_snapshot(const std::string& repo_id, const std::string& cache_dir,
                                               const std::string& repo_type = "models");

// The folder to read a model from, as transformers' from_pretrained finds it offline: `model` itself when it
// is a folder, else the cached snapshot of the Hub id `model`. Throws Error saying what to do otherwise.
std::string resolve_model_folder(const std::string& model);

}  // namespace autotrain
