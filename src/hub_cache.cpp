#include "autotrain/hub_cache.h"

#include <cstdlib>
#include <filesystem>
#include <regex>

#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/logging.h"
#include "autotrain/text_util.h"

namespace autotrain {

namespace fs = std::filesystem;

namespace {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// os.path.expanduser: a leading "~" (alone or before '/') is $HOME.
std::string expand_user(const std::string& path) {
  if (path.empty() || path[0] != '~' || (path.size() > 1 && path[1] != '/')) return path;
  return environment("HOME") + path.substr(1);
}

}  // namespace

std::string hub_cache_dir() {
  // os.getenv returns "" for a variable set to "", and huggingface_hub uses it as given; so do we.
  if (std::getenv("HF_HUB_CACHE")) return expand_user(environment("HF_HUB_CACHE"));
  if (std::getenv("HUGGINGFACE_HUB_CACHE")) return expand_user(environment("HUGGINGFACE_HUB_CACHE"));
  std::string home;
  if (std::getenv("HF_HOME")) {
    home = environment("HF_HOME");
  } else {
    const std::string xdg = std::getenv("XDG_CACHE_HOME") ? environment("XDG_CACHE_HOME") : "~/.cache";
    home = xdg + "/huggingface";
  }
  return expand_user(home) + "/hub";
}

bool is_hub_repo_id(const std::string& name) {
  // REPO_ID_REGEX with re.ASCII: \w is [A-Za-z0-9_]; \b at both ends of each part means it starts and ends
  // with a word character.
  static const std::regex pattern(R"(([A-Za-z0-9_]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?/)?)"
                                  R"([A-Za-z0-9_]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?)");
  if (!std::regex_match(name, pattern)) return false;
  if (name.find("--") != std::string::npos || name.find("..") != std::string::npos) return false;
  return !ends_with(name, ".git");
}

std::optional<std::string> cached_hub_snapshot(const std::string& repo_id, const std::string& cache_dir,
                                               const std::string& repo_type) {
  std::string folder = repo_type;
  for (size_t start = 0;;) {  // repo_folder_name: "models--namespace--name", "datasets--namespace--name"
    const size_t slash = repo_id.find('/', start);
    folder += "--" + repo_id.substr(start, slash - start);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  const fs::path repo = fs::path(cache_dir) / folder;
  std::error_code ec;
  std::string revision = "main";
  if (fs::is_regular_file(repo / "refs" / "main", ec)) revision = read_file((repo / "refs" / "main").string());
  // The revision must be a folder name under snapshots/ (huggingface_hub lists that folder and compares).
  if (revision.empty() || revision.find('/') != std::string::npos || revision == "." || revision == "..")
    return std::nullopt;
  const fs::path snapshot = repo / "snapshots" / revision;
  if (!fs::is_directory(snapshot, ec)) return std::nullopt;
  return snapshot.string();
}

std::string resolve_model_folder(const std::string& model) {
  std::error_code ec;
  if (fs::is_directory(model, ec)) return model;
  if (fs::exists(model, ec))
    throw Error(model + ": not a folder; give the model folder (config.json, *.safetensors, the tokenizer files)");
  if (!is_hub_repo_id(model))
    throw Error(model + ": no such folder; give the path of a Hugging Face model folder, or a Hub id such as "
                "Qwen/Qwen3-8B that is in the local Hugging Face cache");
  const std::string cache = hub_cache_dir();
  if (auto snapshot = cached_hub_snapshot(model, cache)) {
    log::info(model + ": the Hugging Face cache's snapshot " + fs::path(*snapshot).filename().string() + " (" +
              *snapshot + ")");
    return *snapshot;
  }
  throw Error(model + ": no such folder, and the Hugging Face cache " + cache +
              " has no snapshot of it (at refs/main); autotrain never downloads: fetch it with `hf download " + model +
              "` (set HF_HUB_CACHE or HF_HOME if your cache is elsewhere), or give the model's folder");
}

}  // namespace autotrain
