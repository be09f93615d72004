package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// actionMetadata is what TestActionMetadata reads of action.yml.
type actionMetadata struct {
	Name   string `yaml:"name"`
	Inputs map[string]struct {
		Description string `yaml:"description"`
		Required    bool   `yaml:"required"`
		Default     string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Value string `yaml:"value"`
	} `yaml:"outputs"`
	Runs struct {
		Using string       `yaml:"using"`
		Steps []actionStep `yaml:"steps"`
	} `yaml:"runs"`
}

type actionStep struct {
	ID    string            `yaml:"id"`
	If    string            `yaml:"if"`
	Uses  string            `yaml:"uses"`
	Run   string            `yaml:"run"`
	Shell string            `yaml:"shell"`
	With  map[string]string `yaml:"with"`
	Env   map[string]string `yaml:"env"`
}

// readmeSection is the README's section titled title, up to the next
// section of the same level.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, sec, ok := strings.Cut(string(b), "\n"+title+"\n")
	require.True(t, ok, "README has no %q", title)
	level := title[:strings.IndexByte(title, ' ')+1]
	if i := strings.Index(sec, "\n"+level); i >= 0 {
		sec = sec[:i]
	}
	return sec
}

// TestActionMetadata parses action.yml (actionlint, which .ci/run runs,
// checks workflows, and action.yml only through the workflow's uses: ./)
// and checks it against the README: every input is documented and used,
// every input the README documents or its example passes exists, each
// verify flag of issue 11 has its input, and the junit output comes from
// a step that sets it.
func TestActionMetadata(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "action.yml"))
	require.NoError(t, err)
	var a actionMetadata
	require.NoError(t, yaml.Unmarshal(b, &a))
	assert.Equal(t, "composite", a.Runs.Using)
	require.NotEmpty(t, a.Inputs)
	assert.True(t, a.Inputs["program"].Required)

	// Every input is read by some step, and every run step names its
	// shell (composite actions require it).
	var used strings.Builder
	ids := map[string]actionStep{}
	for _, s := range a.Runs.Steps {
		if s.Run != "" {
			assert.NotEmpty(t, s.Shell, "step %q runs a script without a shell", s.ID)
			assert.NotContains(t, s.Run, "${{", "scripts take inputs through env, never by expansion into the script")
		}
		used.WriteString(s.If + "\n")
		for _, v := range s.With {
			used.WriteString(v + "\n")
		}
		for _, v := range s.Env {
			used.WriteString(v + "\n")
		}
		if s.ID != "" {
			ids[s.ID] = s
		}
	}
	for name := range a.Inputs {
		assert.Contains(t, used.String(), "inputs."+name, "input %s is never used", name)
	}

	// The verify flags each have an input, passed on as the flag.
	verify := a.Runs.Steps[len(a.Runs.Steps)-1]
	require.Contains(t, verify.Run, " verify")
	for _, flag := range []string{"at", "every", "points", "device-state", "perturb", "jobs", "shard", "junit", "json", "keep"} {
		require.Contains(t, a.Inputs, flag)
		env := ""
		for k, v := range verify.Env {
			if v == "${{ inputs."+flag+" }}" {
				env = k
			}
		}
		require.NotEmpty(t, env, "the verify step takes no env from input %s", flag)
		assert.Regexp(t, regexp.MustCompile(`--`+regexp.QuoteMeta(flag)+` "\$`+env+`"`), verify.Run)
	}

	// The junit output is set by the step it names.
	out, ok := a.Outputs["junit"]
	require.True(t, ok)
	m := regexp.MustCompile(`^\$\{\{ steps\.([a-z-]+)\.outputs\.junit \}\}$`).FindStringSubmatch(out.Value)
	require.NotNil(t, m, out.Value)
	require.Contains(t, ids, m[1])
	assert.Contains(t, ids[m[1]].Run, `junit=`)
	assert.Contains(t, ids[m[1]].Run, `$GITHUB_OUTPUT`)

	// The README's table lists exactly the inputs; its example passes
	// only inputs that exist.
	sec := readmeSection(t, "## In CI: GitHub Actions")
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z-]+)` \\|").FindAllStringSubmatch(sec, -1) {
		documented = append(documented, m[1])
	}
	var inputs []string
	for name := range a.Inputs {
		inputs = append(inputs, name)
	}
	slices.Sort(documented)
	slices.Sort(inputs)
	assert.Equal(t, inputs, documented, "the README's table of inputs")

	_, example, ok := strings.Cut(sec, "```yaml\n")
	require.True(t, ok)
	example, _, _ = strings.Cut(example, "```")
	var wf struct {
		Jobs map[string]struct {
			Steps []actionStep `yaml:"steps"`
		} `yaml:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(example), &wf), "the README's example")
	found := false
	for _, job := range wf.Jobs {
		for _, s := range job.Steps {
			if !strings.HasPrefix(s.Uses, "emuckpt/emuckpt@") {
				continue
			}
			found = true
			for k := range s.With {
				assert.Contains(t, a.Inputs, k, "the README's example passes %s", k)
			}
			assert.Contains(t, s.With, "program")
		}
	}
	assert.True(t, found, "the README's example uses the action")
}

// TestWorkflowParses: the workflow is YAML whose verify step uploads the
// reports it writes (actionlint, in .ci/run, checks the rest).
func TestWorkflowParses(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".github", "workflows", "ci.yml"))
	require.NoError(t, err)
	var wf struct {
		Jobs map[string]struct {
			Steps []actionStep `yaml:"steps"`
		} `yaml:"jobs"`
	}
	require.NoError(t, yaml.Unmarshal(b, &wf))
	steps := wf.Jobs["test"].Steps
	require.NotEmpty(t, steps)
	var script, upload string
	for _, s := range steps {
		if strings.Contains(s.Run, "verify --") {
			script = s.Run
		}
		if strings.HasPrefix(s.Uses, "actions/upload-artifact@") {
			upload = s.With["path"]
		}
		if strings.Contains(s.Run, "go test ./...") {
			assert.Equal(t, "1", s.Env["EMUCKPT_REQUIRE_KVM"])
		}
	}
	require.NotEmpty(t, upload)
	reports := regexp.MustCompile(`--junit (\S+)`).FindAllStringSubmatch(script, -1)
	require.GreaterOrEqual(t, len(reports), 3, "verify of several programs")
	for _, r := range reports {
		ok, err := filepath.Match(upload, r[1])
		require.NoError(t, err)
		assert.True(t, ok, "%s is not uploaded (path %s)", r[1], upload)
	}
}
