// Where a split's files are (data.h resolve_split_files): AutoTrain's <split>.<ext>, the layouts the `datasets`
// library infers (data_files.py), a dataset card's `configs:` (README.md's YAML, datasets' MetadataConfigs), and
// Hub dataset ids read from the local Hugging Face cache.
#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "autotrain/data.h"
#include "autotrain/error.h"
#include "autotrain/fileio.h"
#include "autotrain/hub_cache.h"
#include "autotrain/logging.h"
#include "autotrain/text_util.h"

namespace autotrain {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

// The data files under `folder` (any depth; hidden files and folders, and those starting "__", left out as
// `datasets` leaves them), as paths relative to it, sorted.
std::vector<std::string> data_files_under(const fs::path& folder) {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind('.', 0) == 0 || name.rfind("__", 0) == 0) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && is_dataset_file(it->path().string()))
      files.push_back(it->path().lexically_relative(folder).generic_string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// `datasets`' split keywords (data_files.py SPLIT_KEYWORDS): the names a split's files may carry.
std::vector<std::string> split_keywords(const std::string& split) {
  static const std::vector<std::vector<std::string>> groups = {
      {"train", "training"}, {"validation", "valid", "dev", "val"}, {"test", "testing", "eval", "evaluation"}};
  for (const auto& group : groups)
    if (std::find(group.begin(), group.end(), split) != group.end()) return group;
  return {split};
}

// `datasets`' keyword patterns (data_files.py, fsspec >= 2023.12) with its separators "-._ 0-9", in its order:
// a folder on the path named KW, KW<sep>..., ...<sep>KW or ...<sep>KW<sep>...; else a file named KW<sep>... or
// ...<sep>KW<sep>.... Each pattern's matches come sorted, the patterns one after the other.
enum class KeywordRule { folder_is, folder_starts, folder_ends, folder_holds, file_starts, file_holds };
constexpr KeywordRule kFolderRules[] = {KeywordRule::folder_is, KeywordRule::folder_starts, KeywordRule::folder_ends,
                                        KeywordRule::folder_holds};
constexpr KeywordRule kFileRules[] = {KeywordRule::file_starts, KeywordRule::file_holds};

bool is_separator(char c) { return c == '-' || c == '.' || c == '_' || c == ' ' || (c >= '0' && c <= '9'); }

bool name_matches(const std::string& name, const std::string& keyword, KeywordRule rule) {
  for (size_t at = name.find(keyword); at != std::string::npos; at = name.find(keyword, at + 1)) {
    const size_t end = at + keyword.size();
    const bool starts = at == 0, ends = end == name.size();
    const bool before = !starts && is_separator(name[at - 1]), after = !ends && is_separator(name[end]);
    switch (rule) {
      case KeywordRule::folder_is: if (starts && ends) return true; break;
      case KeywordRule::folder_starts: case KeywordRule::file_starts: if (starts && after) return true; break;
      case KeywordRule::folder_ends: if (before && ends) return true; break;
      case KeywordRule::folder_holds: case KeywordRule::file_holds: if (before && after) return true; break;
    }
  }
  return false;
}

bool path_matches(const std::string& relative, const std::string& keyword, KeywordRule rule) {
  const std::vector<std::string> parts = split(relative, '/');
  if (rule == KeywordRule::file_starts || rule == KeywordRule::file_holds)
    return name_matches(parts.back(), keyword, rule);
  for (size_t i = 0; i + 1 < parts.size(); ++i)
    if (name_matches(parts[i], keyword, rule)) return true;
  return false;
}

// The Hub's sharded layout (push_to_hub; datasets' SPLIT_PATTERN_SHARDED): data/{split}-NNNNN-of-NNNNN*.ext.
bool is_shard_suffix(const std::string& rest) {  // "-NNNNN-of-NNNNN..." at the start of `rest`
  if (rest.size() < 15 || rest[0] != '-' || rest.compare(6, 4, "-of-") != 0) return false;
  for (size_t i : {1, 2, 3, 4, 5, 10, 11, 12, 13, 14})
    if (!std::isdigit(static_cast<unsigned char>(rest[i]))) return false;
  return true;
}
bool is_hub_shard(const std::string& relative, const std::string& split) {
  const std::string prefix = "data/" + split;
  return relative.rfind(prefix, 0) == 0 && relative.find('/', prefix.size()) == std::string::npos &&
         is_shard_suffix(relative.substr(prefix.size()));
}
bool is_any_hub_shard(const std::string& relative) {
  if (relative.rfind("data/", 0) != 0 || relative.find('/', 5) != std::string::npos) return false;
  for (size_t at = 6; at < relative.size(); ++at)
    if (is_shard_suffix(relative.substr(at))) return true;
  return false;
}

// A folder's files of `split`, by `datasets`' rules in its order (data_files.py _get_data_files_patterns): the
// Hub's shards; else, when a folder of any split's name holds data, the files under folders named for this split;
// else the files named for it; else, for train, every data file.
DataFiles inferred_split_files(const fs::path& folder, const std::string& split) {
  const std::vector<std::string> all = data_files_under(folder);
  std::vector<std::string> chosen;
  auto choose = [&](auto&& rule) {
    for (const std::string& f : all)
      if (rule(f)) chosen.push_back((folder / f).string());
    return !chosen.empty();
  };
  if (std::any_of(all.begin(), all.end(), is_any_hub_shard)) {
    choose([&](const std::string& f) { return is_hub_shard(f, split); });
    return chosen;
  }
  // datasets takes the folder rules when any file of any split matches one, else the file-name rules.
  std::vector<std::string> every_keyword;
  for (const char* s : {"train", "validation", "test"})
    for (const std::string& k : split_keywords(s)) every_keyword.push_back(k);
  auto any_match = [&](const auto& rules) {
    for (const std::string& f : all)
      for (const std::string& k : every_keyword)
        for (KeywordRule rule : rules)
          if (path_matches(f, k, rule)) return true;
    return false;
  };
  auto choose_by = [&](const auto& rules) {
    for (const std::string& k : split_keywords(split))
      for (KeywordRule rule : rules)
        for (const std::string& f : all) {
          const std::string path = (folder / f).string();
          if (path_matches(f, k, rule) && std::find(chosen.begin(), chosen.end(), path) == chosen.end())
            chosen.push_back(path);  // (datasets would read a file twice that two patterns match)
        }
  };
  if (any_match(kFolderRules)) choose_by(kFolderRules);
  else if (any_match(kFileRules)) choose_by(kFileRules);
  else if (split == "train") choose([](const std::string&) { return true; });
  return chosen;
}

// ---- the dataset card's configs ---------------------------------------------------------------------------------

// A line of YAML: its indentation and its text without it (blank and comment lines are dropped).
struct YamlLine {
  int indent = 0;
  std::string text;
  int number = 0;
};

// The YAML that dataset cards write their `configs:` in, read into JSON: block mappings and sequences (a sequence
// may sit at its key's indentation), plain, 'single'- and "double"-quoted scalars, flow sequences of scalars
// ([a, b]); true / false / null. Anything else (block scalars, anchors, flow mappings) is an Error naming the line.
class CardYaml {
 public:
  CardYaml(std::vector<YamlLine> lines, std::string where) : lines_(std::move(lines)), where_(std::move(where)) {}

  json parse() {
    if (lines_.empty()) return nullptr;
    json node = parse_node();
    if (at_ < lines_.size()) fail(lines_[at_], "indentation that does not fit the lines above it");
    return node;
  }

 private:
  static bool is_item(const std::string& text) { return text == "-" || text.rfind("- ", 0) == 0; }

  [[noreturn]] void fail(const YamlLine& line, const std::string& why) const {
    throw Error(where_ + ":" + std::to_string(line.number) + ": " + why + " in the dataset card's configs; write " +
                "them as datasets' documentation shows (configs: - config_name: ... data_files: ...)");
  }

  json parse_node() { return is_item(lines_[at_].text) ? parse_sequence() : parse_mapping(); }

  // The node of the lines after a "key:" or "-" with nothing after it: deeper lines, or a sequence at `indent`.
  json parse_child(int indent, bool sequence_may_align) {
    if (at_ == lines_.size()) return nullptr;
    const YamlLine& next = lines_[at_];
    if (next.indent > indent || (sequence_may_align && next.indent == indent && is_item(next.text)))
      return parse_node();
    return nullptr;
  }

  json parse_sequence() {
    const int indent = lines_[at_].indent;
    json sequence = json::array();
    while (at_ < lines_.size() && lines_[at_].indent == indent && is_item(lines_[at_].text)) {
      YamlLine& line = lines_[at_];
      const std::string rest = trim(line.text.substr(1));
      if (rest.empty()) {
        ++at_;
        sequence.push_back(parse_child(indent, false));
      } else if (key_of(rest)) {  // "- key: value": a mapping whose first key sits after the dash
        line.indent = indent + static_cast<int>(line.text.find(rest));
        line.text = rest;
        sequence.push_back(parse_mapping());
      } else {
        sequence.push_back(scalar(rest, line));
        ++at_;
      }
    }
    return sequence;
  }

  json parse_mapping() {
    const int indent = lines_[at_].indent;
    json mapping = json::object();
    while (at_ < lines_.size() && lines_[at_].indent == indent && !is_item(lines_[at_].text)) {
      const YamlLine& line = lines_[at_];
      const std::optional<std::pair<std::string, std::string>> entry = key_of(line.text);
      if (!entry) fail(line, "a line that is neither \"key: value\" nor \"- item\"");
      ++at_;
      mapping[entry->first] = entry->second.empty() ? parse_child(indent, true) : scalar(entry->second, line);
    }
    return mapping;
  }

  // "key: value" or "key:" (the key plain or quoted) -> {key, value}.
  static std::optional<std::pair<std::string, std::string>> key_of(const std::string& text) {
    size_t end = 0;
    std::string key;
    if (!text.empty() && (text[0] == '"' || text[0] == '\'')) {
      end = text.find(text[0], 1);
      if (end == std::string::npos) return std::nullopt;
      key = text.substr(1, end - 1);
      ++end;
      if (end >= text.size() || text[end] != ':') return std::nullopt;
    } else {
      end = text.find(": ");
      if (end == std::string::npos && !text.empty() && text.back() == ':') end = text.size() - 1;
      if (end == std::string::npos || end == 0) return std::nullopt;
      key = trim(text.substr(0, end));
    }
    return std::make_pair(key, trim(text.substr(end + 1)));
  }

  json scalar(const std::string& text, const YamlLine& line) const {
    if (text[0] == '[') {
      if (text.back() != ']') fail(line, "a flow sequence that does not end on its line");
      json items = json::array();
      for (const std::string& item : split_flow(text.substr(1, text.size() - 2), line))
        if (!trim(item).empty()) items.push_back(scalar(trim(item), line));
      return items;
    }
    if (text[0] == '"' || text[0] == '\'') return quoted(text, line);
    if (text[0] == '{' || text[0] == '|' || text[0] == '>' || text[0] == '&' || text[0] == '*' || text[0] == '!')
      fail(line, "YAML beyond plain and quoted values (\"" + text.substr(0, 1) + "\")");
    std::string plain = text;
    if (const size_t comment = plain.find(" #"); comment != std::string::npos) plain = trim(plain.substr(0, comment));
    if (plain == "true" || plain == "True") return true;
    if (plain == "false" || plain == "False") return false;
    if (plain == "null" || plain == "~") return nullptr;
    return plain;
  }

  json quoted(const std::string& text, const YamlLine& line) const {
    const char quote = text[0];
    std::string out;
    size_t i = 1;
    for (; i < text.size(); ++i) {
      const char c = text[i];
      if (quote == '\'' && c == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        out += '\'';
        ++i;
      } else if (c == quote) {
        break;
      } else if (quote == '"' && c == '\\' && i + 1 < text.size()) {
        const char e = text[++i];
        out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
      } else {
        out += c;
      }
    }
    if (i >= text.size()) fail(line, "a quoted value that does not end on its line");
    const std::string after = trim(text.substr(i + 1));
    if (!after.empty() && after[0] != '#') fail(line, "text after a quoted value");
    return out;
  }

  std::vector<std::string> split_flow(const std::string& text, const YamlLine& line) const {
    std::vector<std::string> items(1);
    char quote = 0;
    for (char c : text) {
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == ',') {
        items.emplace_back();
        continue;
      } else if (c == '[' || c == '{') {
        fail(line, "a nested flow collection");
      }
      items.back() += c;
    }
    return items;
  }

  std::vector<YamlLine> lines_;
  std::string where_;
  size_t at_ = 0;
};

// The `configs:` list of the YAML front matter of `readme` (between its first two "---" lines), or null.
json card_configs(const std::string& readme) {
  std::error_code ec;
  if (!fs::is_regular_file(readme, ec)) return nullptr;
  const std::string card = read_file(readme);
  if (!is_valid_utf8(card)) throw Error(readme + ": not valid UTF-8; the dataset card must be UTF-8 text");
  const std::vector<std::string> text = split(card, '\n');
  if (text.empty() || trim(text[0]) != "---") return nullptr;
  std::vector<YamlLine> lines;
  bool inside = false;
  for (size_t n = 1; n < text.size(); ++n) {
    std::string line = text[n];
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line) == "---" || trim(line) == "...") break;
    const size_t indent = line.find_first_not_of(' ');
    if (indent == std::string::npos || line[indent] == '#') continue;
    if (indent == 0 && line.rfind("configs:", 0) == 0) {
      inside = true;
      if (!trim(line.substr(8)).empty())
        throw Error(readme + ":" + std::to_string(n + 1) + ": write the configs as a block list (configs:, then " +
                    "one \"- config_name: ...\" a config)");
      continue;
    }
    if (!inside) continue;
    if (indent == 0 && line[0] != '-') break;  // the next top-level key
    if (line.find('\t') < indent) throw Error(readme + ":" + std::to_string(n + 1) + ": a tab in the indentation");
    lines.push_back({static_cast<int>(indent), trim(line.substr(indent)), static_cast<int>(n + 1)});
  }
  if (!inside) return nullptr;
  return CardYaml(std::move(lines), readme).parse();
}

// datasets' MetadataConfigs.get_default_config_name: the only config, or the one named "default", or the one
// marked `default: true` (two such are an error).
const json* default_config(const json& configs, const std::string& readme) {
  const json* chosen = nullptr;
  for (const json& config : configs) {
    const bool is_default = configs.size() == 1 || config.value("config_name", "") == "default" ||
                            (config.contains("default") && config["default"] == true);
    if (!is_default) continue;
    if (chosen) throw Error(readme + ": two configs are the default (" + (*chosen)["config_name"].dump() + ", " +
                            config["config_name"].dump() + "); mark one");
    chosen = &config;
  }
  return chosen;
}

// datasets' sanitize_patterns: a config's data_files as {split: [patterns]} (a string or a list of strings is the
// train split's).
std::vector<std::pair<std::string, std::vector<std::string>>> split_patterns(const json& data_files,
                                                                             const std::string& where) {
  auto strings = [&](const json& value) {
    std::vector<std::string> out;
    for (const json& item : value.is_array() ? value : json::array({value})) {
      if (!item.is_string()) throw Error(where + ": data_files must hold paths (strings), not " + item.dump());
      out.push_back(item.get<std::string>());
    }
    return out;
  };
  if (data_files.is_string()) return {{"train", strings(data_files)}};
  if (!data_files.is_array()) throw Error(where + ": data_files must be a path, a list of paths or of {split, path}");
  if (std::none_of(data_files.begin(), data_files.end(), [](const json& item) { return item.is_object(); }))
    return {{"train", strings(data_files)}};
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const json& item : data_files) {
    if (!item.is_object() || item.size() != 2 || !item.contains("split") || !item["split"].is_string() ||
        !item.contains("path"))
      throw Error(where + ": each data_files entry must be {split: NAME, path: PATTERN or [PATTERN, ...]}, not " +
                  item.dump());
    out.emplace_back(item["split"].get<std::string>(), strings(item["path"]));
  }
  return out;
}

// ---- glob patterns (fsspec's, as datasets resolves data_files: "*" within a folder, "**" across folders) --------

bool match_name(const char* pattern, const char* name) {
  for (; *pattern; ++pattern, ++name) {
    if (*pattern == '*') {
      while (*pattern == '*') ++pattern;
      if (!*pattern) return true;
      for (; *name; ++name)
        if (match_name(pattern, name)) return true;
      return false;
    }
    if (!*name) return false;
    if (*pattern == '[') {
      const char* p = pattern + 1;
      const bool negate = *p == '!' || *p == '^';
      if (negate) ++p;
      bool found = false;
      for (bool first = true; *p && (first || *p != ']'); first = false, ++p) {
        if (p[1] == '-' && p[2] && p[2] != ']') {
          found |= *name >= p[0] && *name <= p[2];
          p += 2;
        } else {
          found |= *name == *p;
        }
      }
      if (*p != ']') return *name == '[' && match_name(pattern + 1, name + 1);  // no closing bracket: a literal '['
      if (found == negate) return false;
      pattern = p;
    } else if (*pattern != '?' && *pattern != *name) {
      return false;
    }
  }
  return !*name;
}

bool match_parts(const std::vector<std::string>& pattern, size_t p, const std::vector<std::string>& path, size_t s) {
  if (p == pattern.size()) return s == path.size();
  if (pattern[p] == "**") {
    for (size_t k = s; k <= path.size(); ++k)
      if (match_parts(pattern, p + 1, path, k)) return true;
    return false;
  }
  return s < path.size() && match_name(pattern[p].c_str(), path[s].c_str()) && match_parts(pattern, p + 1, path, s + 1);
}

bool glob_matches(std::string pattern, const std::string& relative) {
  while (pattern.rfind("./", 0) == 0) pattern = pattern.substr(2);
  return match_parts(split(pattern, '/'), 0, split(relative, '/'), 0);
}

// ---- the split's files ----------------------------------------------------------------------------------------

// A data_path that is not on disk but is a Hub dataset id: its snapshot in the Hugging Face cache.
std::optional<std::string> cached_dataset_folder(const std::string& data_path) {
  if (!is_hub_repo_id(data_path)) return std::nullopt;
  auto snapshot = cached_hub_snapshot(data_path, hub_cache_dir(), "datasets");
  static std::set<std::string> said;  // once a run, though each split (and each check) resolves it again
  if (snapshot && said.insert(*snapshot).second)
    log::info(data_path + ": the Hugging Face cache's dataset snapshot " + *snapshot);
  return snapshot;
}

// A folder without configs (or a config without data_files): AutoTrain's <split>.<ext>, else datasets' inference.
DataFiles split_files_in_folder(const fs::path& folder, const std::string& split) {
  std::error_code ec;
  for (const std::string& ext : dataset_extensions()) {
    const fs::path candidate = folder / (split + ext);
    if (fs::is_regular_file(candidate, ec)) return {candidate.string()};
  }
  return inferred_split_files(folder, split);
}

std::string quoted_names(const json& configs) {
  std::vector<std::string> names;
  for (const json& config : configs) names.push_back("\"" + config.value("config_name", "") + "\"");
  return join(names, ", ");
}

// The files of `split` in config `name` (empty: the default) of the card's `configs`.
DataFiles split_files_of_config(const fs::path& folder, const json& configs, const std::string& readme,
                                const std::string& name, const std::string& split) {
  const json* config = nullptr;
  if (!configs.is_array()) throw Error(readme + ": configs must be a list of {config_name, data_files, ...}");
  for (const json& c : configs)
    if (!c.is_object() || !c.contains("config_name") || !c["config_name"].is_string())
      throw Error(readme + ": each config needs a config_name, not " + c.dump());
  if (name.empty()) {
    config = default_config(configs, readme);
    if (!config)
      throw Error(readme + ": several configs and none is the default: give the split as \"CONFIG:" + split +
                  "\" (train_split / valid_split), CONFIG one of " + quoted_names(configs));
  } else {
    for (const json& c : configs)
      if (c["config_name"] == name) config = &c;
    if (!config)
      throw Error(readme + ": no config \"" + name + "\"; the configs are " + quoted_names(configs));
  }
  const std::string config_name = (*config)["config_name"].get<std::string>();
  fs::path base = folder;
  if (config->contains("data_dir") && (*config)["data_dir"].is_string())
    base = folder / (*config)["data_dir"].get<std::string>();
  if (!config->contains("data_files") || (*config)["data_files"].is_null()) return split_files_in_folder(base, split);
  const auto patterns = split_patterns((*config)["data_files"], readme + ": config \"" + config_name + "\"");
  std::vector<std::string> splits;
  for (const auto& [name_of_split, split_globs] : patterns) {
    splits.push_back(name_of_split);
    if (name_of_split != split) continue;
    const std::vector<std::string> all = data_files_under(base);
    DataFiles files;
    for (const std::string& pattern : split_globs)
      for (const std::string& f : all)
        if (glob_matches(pattern, f)) files.push_back((base / f).string());
    return files;
  }
  throw Error(readme + ": config \"" + config_name + "\" has no split \"" + split + "\"; its splits are " +
              join(splits, ", "));
}

// A JSON file of a save_to_disk folder, parsed; an error names it.
json saved_json(const fs::path& path) {
  return parse_json_file(path.string(), "save the dataset again (save_to_disk)");
}

// The .arrow files of one Dataset saved by save_to_disk: state.json's _data_files, in order.
DataFiles saved_dataset_files(const fs::path& folder) {
  const fs::path state_path = folder / "state.json";
  const json state = saved_json(state_path);
  const auto refuse = [&](const std::string& why) {
    return Error(state_path.string() + ": " + why + "; save the dataset again with datasets' save_to_disk");
  };
  if (!state.is_object() || !state.contains("_data_files") || !state["_data_files"].is_array())
    throw refuse("no _data_files list");
  if (state.contains("_indices_data_files") && !state["_indices_data_files"].is_null())
    throw refuse("an indices mapping (_indices_data_files), which autotrain does not apply");
  DataFiles files;
  for (const json& entry : state["_data_files"]) {
    if (!entry.is_object() || !entry.contains("filename") || !entry["filename"].is_string())
      throw refuse("a _data_files entry without a filename: " + entry.dump());
    const std::string name = entry["filename"].get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || fs::path(name).extension() != ".arrow")
      throw refuse("a data file \"" + name + "\" that is not an .arrow file beside it");
    files.push_back((folder / name).string());
  }
  if (files.empty()) throw refuse("no data files");
  return files;
}

// A folder written by datasets' save_to_disk, read as AutoTrain reads its own prepared data
// (load_from_disk(data_path)[split]): a DatasetDict (dataset_dict.json naming the splits, a folder each) or one
// Dataset (state.json), which is the train split. Nothing when the folder is neither.
std::optional<DataFiles> saved_to_disk_files(const fs::path& folder, const std::string& split) {
  std::error_code ec;
  const fs::path dict_path = folder / "dataset_dict.json";
  if (fs::is_regular_file(dict_path, ec)) {
    const json dict = saved_json(dict_path);
    if (!dict.is_object() || !dict.contains("splits") || !dict["splits"].is_array())
      throw Error(dict_path.string() + ": no \"splits\" list; save the dataset again with datasets' save_to_disk");
    std::vector<std::string> splits;
    for (const json& name : dict["splits"])
      if (name.is_string()) splits.push_back(name.get<std::string>());
    if (std::find(splits.begin(), splits.end(), split) == splits.end())
      throw Error(folder.string() + ": a DatasetDict saved with save_to_disk, whose splits are " + join(splits, ", ") +
                  "; it has no split \"" + split + "\" (set train_split / valid_split to one of them)");
    return saved_dataset_files(folder / split);
  }
  if (!fs::is_regular_file(folder / "state.json", ec)) return std::nullopt;
  if (split != "train")
    throw Error(folder.string() + ": one Dataset saved with save_to_disk, read as the train split; it has no split \"" +
                split + "\" (save a DatasetDict with a \"" + split + "\" split, or set valid_split to null)");
  return saved_dataset_files(folder);
}

}  // namespace

DataFiles resolve_split_files(const std::string& data_path, const std::string& split_spec) {
  std::error_code ec;
  if (fs::is_regular_file(data_path, ec)) return {data_path};
  // AutoTrain's "CONFIG:SPLIT" (load_dataset(data_path, name=CONFIG, split=SPLIT)).
  const size_t colon = split_spec.find(':');
  const std::string config = colon == std::string::npos ? "" : split_spec.substr(0, colon);
  const std::string split = colon == std::string::npos ? split_spec : split_spec.substr(colon + 1);
  if (colon != std::string::npos && (config.empty() || split.empty() || split.find(':') != std::string::npos))
    throw config_error("split \"" + split_spec + "\": give a split name, or CONFIG:SPLIT");
  std::string folder = data_path;
  if (!fs::is_directory(data_path, ec)) {
    std::optional<std::string> cached = cached_dataset_folder(data_path);
    if (!cached)
      throw Error("data_path \"" + data_path + "\" does not exist; give a .jsonl/.csv/.parquet file, a folder holding " +
                  split + ".jsonl (or .json/.csv/.txt/.parquet/.arrow), a folder saved by save_to_disk, or a Hub " +
                  "dataset id in the local Hugging Face cache (`hf download --repo-type dataset ID`)");
    folder = *cached;
  }
  if (std::optional<DataFiles> saved = saved_to_disk_files(folder, split_spec)) return *saved;
  const std::string readme = (fs::path(folder) / "README.md").string();
  const json configs = card_configs(readme);
  if (configs.is_null() && !config.empty())
    throw Error("data_path \"" + data_path + "\" has no configs in a README.md dataset card, so no config \"" +
                config + "\"; give the split alone (\"" + split + "\")");
  DataFiles files = configs.is_null() ? split_files_in_folder(folder, split)
                                      : split_files_of_config(folder, configs, readme, config, split);
  if (files.empty())
    throw Error("data_path \"" + data_path + "\" holds no " + split + ".jsonl, .json, .csv, .txt, .parquet or " +
                ".arrow, nor files of split \"" + split_spec + "\" as the datasets library lays them out (data/" +
                split + "-00000-of-00001.parquet, a folder named " + split + ", a README.md config's data_files, a " +
                "save_to_disk folder, ...)");
  const std::string ext = dataset_extension(files.front());
  for (const std::string& f : files)
    if (dataset_extension(f) != ext)
      throw Error("data_path \"" + data_path + "\": split \"" + split_spec + "\" has files of two formats (" +
                  files.front() + ", " + f + "); keep one format a split");
  return files;
}

std::string files_label(const DataFiles& files) {
  if (files.size() == 1) return files.front();
  return files.front() + " and " + std::to_string(files.size() - 1) + " more file" + (files.size() > 2 ? "s" : "");
}

}  // namespace autotrain
