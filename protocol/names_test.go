package protocol

import (
	"strings"
	"testing"
)

func TestValidTopicName(t *testing.T) {
	tests := []struct {
		name  string
		topic string
		want  string // the error's message; "" when the name is valid
	}{
		{"one character", "a", ""},
		{"every allowed character", "azAZ09._-", ""},
		{"dots inside", "a..b", ""},
		{"249 characters", strings.Repeat("x", 249), ""},
		{"empty", "", "topic name is empty"},
		{"250 characters", strings.Repeat("x", 250), "topic name is longer than 249 characters"},
		{"dot", ".", `topic name "." is not allowed: Kafka reserves "." and ".."`},
		{"dot dot", "..", `topic name ".." is not allowed: Kafka reserves "." and ".."`},
		{"space", "a b", `topic name "a b" contains ' ': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"slash", "a/b", `topic name "a/b" contains '/': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"non-ASCII letter", "ä", `topic name "ä" contains 'ä': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
		{"NUL", "a\x00", `topic name "a\x00" contains '\x00': only a-z, A-Z, 0-9, '.', '_' and '-' are allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := ValidTopicName(tt.topic); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidGroupName(t *testing.T) {
	tests := []struct {
		name  string
		group string
		want  string // the error's message; "" when the name is valid
	}{
		{"one character", "g", ""},
		{"anything goes", "group 1/ü.*", ""},
		{"255 characters", strings.Repeat("g", 255), ""},
		{"255 two-byte characters", strings.Repeat("é", 255), ""},
		{"empty", "", "consumer group name is empty"},
		{"256 characters", strings.Repeat("g", 256), "consumer group name is longer than 255 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := ValidGroupName(tt.group); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
