package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

func mediaType(c echo.Context) string {
	mt, _, _ := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	return mt
}

// decodeJSON requires a JSON body and decodes it into v. Typed fields
// refuse operator objects like {"$gt": ""} where a string belongs.
func decodeJSON(c echo.Context, v any) error {
	if mediaType(c) != echo.MIMEApplicationJSON {
		return &apiError{p: problem{Status: http.StatusUnsupportedMediaType, Title: "Unsupported Media Type",
			Code: "unsupported_media_type", Detail: "Content-Type must be application/json"}}
	}
	return decodeJSONBody(c.Request().Body, v)
}

func decodeJSONBody(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	if err := dec.Decode(v); err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return he // the body limit
		}
		return jsonError(err)
	}
	if dec.More() {
		return &apiError{p: problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_request",
			Detail: "the body must hold one JSON value"}}
	}
	return nil
}

// jsonError explains a decoding failure without echoing the input.
func jsonError(err error) error {
	// malformed_json (a syntax error) is told apart from a well-formed
	// body of the wrong shape: some styles answer them differently.
	code, detail := codeMalformedJSON, "the body is not valid JSON"
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		code, detail = "invalid_request", fmt.Sprintf("%s: must be a %s", te.Field, jsonKind(te.Type.Kind().String()))
	case errors.As(err, &te):
		code, detail = "invalid_request", "the body must be a JSON object"
	case errors.Is(err, io.EOF):
		code, detail = "invalid_request", "the body is empty; a JSON object is required"
	}
	return &apiError{p: problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: code, Detail: detail}}
}

const codeMalformedJSON = "malformed_json"

func jsonKind(k string) string {
	switch k {
	case "int", "int64", "float64":
		return "number"
	case "slice":
		return "list"
	case "map", "struct":
		return "object"
	}
	return k
}

// decodeParams reads flat string parameters from a form (urlencoded or
// multipart) or a JSON object, as the OAuth token endpoint and abitmedia
// accept. A JSON value that is not a string is refused.
func decodeParams(c echo.Context) (url.Values, error) {
	switch mt := mediaType(c); mt {
	case echo.MIMEApplicationForm, echo.MIMEMultipartForm:
		if mt == echo.MIMEMultipartForm {
			if err := c.Request().ParseMultipartForm(BodyLimit); err != nil {
				return nil, paramsError(err)
			}
		} else if err := c.Request().ParseForm(); err != nil {
			return nil, paramsError(err)
		}
		return c.Request().PostForm, nil
	case echo.MIMEApplicationJSON:
		var raw map[string]any
		if err := decodeJSONBody(c.Request().Body, &raw); err != nil {
			return nil, err
		}
		v := url.Values{}
		for k, val := range raw {
			switch x := val.(type) {
			case string:
				v.Set(k, x)
			case float64:
				v.Set(k, strings.TrimSuffix(fmt.Sprintf("%v", x), ".0"))
			case nil:
			default:
				return nil, &apiError{p: problem{Status: http.StatusBadRequest, Title: "Bad Request",
					Code: "invalid_request", Detail: k + ": must be a string"}}
			}
		}
		return v, nil
	}
	return nil, &apiError{p: problem{Status: http.StatusUnsupportedMediaType, Title: "Unsupported Media Type",
		Code: "unsupported_media_type", Detail: "Content-Type must be application/x-www-form-urlencoded, multipart/form-data or application/json"}}
}

func paramsError(err error) error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he
	}
	if strings.Contains(err.Error(), "too large") {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge)
	}
	return &apiError{p: problem{Status: http.StatusBadRequest, Title: "Bad Request", Code: "invalid_request", Detail: "the form body is malformed"}}
}

// noStore marks a response carrying tokens as not cacheable.
func noStore(c echo.Context) {
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}
